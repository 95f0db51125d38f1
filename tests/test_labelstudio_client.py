"""The Label Studio client's own parts: the streamed export parser, bounded retries, no token in errors."""

import json
import random

import pytest

from hivau.tasks.review.labelstudio import iter_json_array


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
def test_export_parser_reads_any_array_in_any_chunk_size(tmp_path, chunk):
    path = tmp_path / "export.json"
    cases = [[], [1], [1, 23, 456, 7890, -1.5e10, True, None, "x"],
             [{"a": "x" * 500, "b": [1, 2, {"c": "]"}]}] * 20, [{"s": "é\u2028\"]", "n": i} for i in range(300)]]
    for data in cases:
        path.write_text(json.dumps(data, indent=random.Random(chunk).choice([None, 1])))
        assert list(iter_json_array(path, chunk)) == data


@pytest.mark.parametrize("text,message", [("", "is empty"), ("{}", "does not hold a JSON array"),
                                          ("[1, 2", "ends before"), ("[1, {]", "broken JSON")])
def test_export_parser_names_a_broken_file(tmp_path, text, message):
    path = tmp_path / "export.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        list(iter_json_array(path, 4))
