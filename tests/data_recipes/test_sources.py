"""Loading local files and the one-line errors users see for bad data."""

import hashlib
import json

import datasets
import pandas as pd
import pytest

from data_recipes.sources import DataError, fingerprint, load_rows

ROWS = [{"prompt": "1+1=", "completion": "2"}, {"prompt": "2+2=", "completion": "4"}]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_loads_jsonl_json_parquet_csv(tmp_path):
    write_jsonl(tmp_path / "rows.jsonl", ROWS)
    (tmp_path / "rows.json").write_text(json.dumps(ROWS), encoding="utf-8")
    pd.DataFrame(ROWS).to_parquet(tmp_path / "rows.parquet")
    pd.DataFrame(ROWS).to_csv(tmp_path / "rows.csv", index=False)
    for name in ("rows.jsonl", "rows.json", "rows.parquet", "rows.csv"):
        rows = load_rows(str(tmp_path / name))
        assert rows.column_names == ["prompt", "completion"], name
        assert rows["completion"] == ["2", "4"], name


def test_json_file_holding_json_lines_loads(tmp_path):
    path = write_jsonl(tmp_path / "rows.json", ROWS)
    assert len(load_rows(str(path))) == 2


def test_raw_line_separator_inside_a_string_is_valid_json(tmp_path):
    # U+2028 is legal inside JSON strings; str.splitlines() would wrongly split the line there.
    path = write_jsonl(tmp_path / "rows.jsonl", [{"prompt": "a\u2028b", "completion": "c"}])
    assert load_rows(str(path))[0]["prompt"] == "a\u2028b"


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"missing\.jsonl: file not found"):
        load_rows(str(tmp_path / "missing.jsonl"))


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps(row) for row in ROWS * 8] + ['{"prompt": "x", "completion": ']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as raised:
        load_rows(str(path))
    message = str(raised.value)
    assert "bad.jsonl:17: invalid JSON (" in message and "\n" not in message


def test_malformed_first_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": 1\n' + json.dumps(ROWS[0]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:1: invalid JSON"):
        load_rows(str(path))


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n[1, 2]\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: expected a JSON object, got list"):
        load_rows(str(path))


def test_malformed_json_document_names_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"prompt": "a", "completion": "b"},\n  {"prompt": "a" "completion": "b"}\n]\n')
    with pytest.raises(DataError, match=r"bad\.json:3: invalid JSON \(Expecting ','"):
        load_rows(str(path))


def test_non_utf8_file_names_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    latin1_line = '{"prompt": "caf\u00e9", "completion": "x"}\n'.encode("latin-1")
    path.write_bytes(json.dumps(ROWS[0]).encode() + b"\n" + latin1_line)
    with pytest.raises(DataError, match=r"latin1\.jsonl:2: not valid UTF-8"):
        load_rows(str(path))


def test_unreadable_parquet(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match=r"broken\.parquet: cannot read as parquet"):
        load_rows(str(path))


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.jsonl", ""),
        ("empty.jsonl", "\n\n"),
        ("empty.json", "[]"),
        ("empty.csv", ""),
        ("empty.csv", "prompt,completion\n"),
    ],
)
def test_empty_dataset(tmp_path, name, content):
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=rf"{name}: no rows"):
        load_rows(str(tmp_path / name))


def test_csv_columns_stay_text(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("prompt,completion\nWhat is 6*7?,42\nSay NA,NA\n", encoding="utf-8")
    assert load_rows(str(path))["completion"] == ["42", "NA"]


def test_hub_id_goes_to_load_dataset(monkeypatch):
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: calls.append((args, kwargs)) or ROWS)
    load_rows("openai/gsm8k", split="test", config="main")
    load_rows("openai/gsm8k", split="test", config="main", revision="v1.0")  # target.revision / a source's
    assert calls == [
        (("openai/gsm8k", "main"), {"split": "test", "revision": None}),
        (("openai/gsm8k", "main"), {"split": "test", "revision": "v1.0"}),
    ]


def test_hub_failure_is_one_line_data_error(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the hub\nlong details")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as raised:
        load_rows("someone/some-dataset")
    expected = "someone/some-dataset: cannot load from the hub (ConnectionError: Couldn't reach the hub)"
    assert str(raised.value) == expected


def test_fingerprint_is_sha256_of_content(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", ROWS)
    assert fingerprint(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert fingerprint(str(path)) == fingerprint(write_jsonl(tmp_path / "copy.jsonl", ROWS))
