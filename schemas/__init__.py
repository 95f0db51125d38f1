"""Record types shared by every stage (pydantic) and their matching pyarrow schemas."""

from hivau.schemas.records import *  # noqa: F401,F403
from hivau.schemas.records import __all__  # noqa: F401
