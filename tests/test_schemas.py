"""Pydantic records and their pyarrow schemas agree, survive parquet, and carry a schema version."""

import pyarrow.parquet as pq
import pytest

from hivau.schemas.records import (
    HUMAN,
    SCHEMA_VERSION,
    TABLE_MODELS,
    Generator,
    InstructionRow,
    QuarantineRecord,
    arrow_schema,
    to_arrow_table,
)


@pytest.mark.parametrize("table", sorted(TABLE_MODELS))
def test_arrow_schema_matches_model(table):
    model = TABLE_MODELS[table]
    schema = arrow_schema(model)
    assert schema.names == list(model.model_fields)
    assert schema.metadata[b"schema_version"].decode() == SCHEMA_VERSION
    assert "schema_version" in schema.names


def test_instruction_row_round_trips_through_parquet(tmp_path):
    row = InstructionRow(id="v_E0_qa_when", item_id="v_E0", split="train", level="event", task="qa", qa_type="when", media_path="media/events/v_E0.mp4",
                         source_video="v", start_s=1.5, end_s=4.0, labels=["Fighting"], is_anomaly=True,
                         prompt="When does the fight happen?", answer="Between 1.5 s and 4.0 s.",
                         provenance="auto_draft", generator=Generator(backend="openai", model="m", prompt_version="qa@1"))
    pq.write_table(to_arrow_table([row], InstructionRow), tmp_path / "rows.parquet")
    back = pq.read_table(tmp_path / "rows.parquet").to_pylist()
    assert InstructionRow.model_validate(back[0]) == row


def test_records_reject_unknown_values():
    with pytest.raises(ValueError):
        QuarantineRecord(item_id="x", level="frame", reason="r", detail="d", stage="probe")
    with pytest.raises(ValueError):
        InstructionRow(id="x", item_id="x", split="train", level="clip", task="caption", media_path="m", source_video="v", start_s=0, end_s=1,
                       prompt="p", answer="a", provenance="guessed", generator=HUMAN)


def test_empty_table_keeps_schema(tmp_path):
    from hivau.workspace import Workspace

    ws = Workspace.at(tmp_path)
    with ws.manifest_set() as out:
        out.add("quarantine", [])
    table = ws.read_table("quarantine")
    assert table.num_rows == 0 and table.schema.names == list(QuarantineRecord.model_fields)
