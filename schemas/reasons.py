"""Quarantine and drop reasons: snake_case constants that double as run-summary stat keys."""

# Whole annotation entries that cannot be read at all.
ENTRY_MALFORMED = "entry_malformed"
ENTRY_DUPLICATE = "entry_duplicate"

# Source videos.
VIDEO_MISSING = "video_missing"
VIDEO_EMPTY = "video_empty"
VIDEO_UNREADABLE = "video_unreadable"
VIDEO_NO_VIDEO_STREAM = "video_no_video_stream"
VIDEO_TRUNCATED = "video_truncated"
VIDEO_UNDECODABLE = "video_undecodable"

# Segment times that do not fit their video (events and clips alike; the record's level says which).
TIME_NAN = "time_nan"
TIME_NEGATIVE = "time_negative"
TIME_START_NOT_BEFORE_END = "time_start_not_before_end"
TIME_PAST_END = "time_past_end"
EVENT_OVERLAP = "event_overlap"
SPAN_UNASSIGNED = "span_unassigned"

# Cutting.
CUT_FAILED = "cut_failed"
# A shard of videos that failed in a later stage (motion, review media) after its retries.
SHARD_FAILED = "shard_failed"

ENTRY_NO_LABELS = "entry_no_labels"
# a video another batch declared for the other split (`hivau build --split`): it keeps its first split
SPLIT_CONFLICT = "split_conflict"


# Captioning and LLM roll-up: the item's text is missing, never replaced by a placeholder.
CAPTION_MISSING = "caption_missing"
CAPTION_FAILED = "caption_failed"
NO_INPUT_TEXT = "no_input_text"
LLM_REQUEST_FAILED = "llm_request_failed"
LLM_REQUEST_REJECTED = "llm_request_rejected"
LLM_INVALID_OUTPUT = "llm_invalid_output"
LLM_TRUNCATED_OUTPUT = "llm_truncated_output"
# the server could not be reached (refused, reset, connect timeout) for longer than llm.outage_s
LLM_UNREACHABLE = "llm_unreachable"

ALL_REASONS = tuple(v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str) and k != "ALL_REASONS")
