"""The operations log's chain check: a race's loser is no break in Kafka, a gap or an edited record is."""

from __future__ import annotations

import msgspec

from handoff.audit.opslog import check_records
from handoff.audit.report import Report
from handoff.kernel.operations import (
    OperationsRecord,
    OperationsState,
    decide_job_config,
    encode_record,
    evolve,
    seal,
)

NOW = "2026-12-01T10:00:00.000000Z"


def _chain(count: int) -> tuple[list[OperationsRecord], OperationsState]:
    state, records = OperationsState(), []
    for n in range(count):
        record = seal(state, decide_job_config(state, "dormancy", None, 60 + n), "operator", NOW)
        records.append(record)
        state = evolve(state, record)
    return records, state


def _check(records: list[OperationsRecord], *, races: bool = True) -> Report:
    report = Report()
    check_records(((encode_record(r), f"offset {i}") for i, r in enumerate(records)), report, races=races)
    return report


def test_a_record_that_lost_an_append_race_is_superseded_not_a_break() -> None:
    records, _ = _chain(2)
    before_second = evolve(OperationsState(), records[0])
    loser = seal(before_second, decide_job_config(before_second, "dormancy", False, None), "other", NOW)
    report = _check([*records, loser])
    assert report.ok and report.operations == 3 and report.operations_superseded == 1


def test_a_loser_is_a_break_where_races_cannot_happen() -> None:
    records, _ = _chain(2)
    before_second = evolve(OperationsState(), records[0])
    loser = seal(before_second, decide_job_config(before_second, "dormancy", False, None), "other", NOW)
    report = _check([*records, loser], races=False)
    assert [p.operations for p in report.problems] == [2]
    where, what = "operations log position 2 (offset 2)", "record is out of place (it follows position 2)"
    assert str(report.problems[0]) == f"{where}: {what}"


def test_a_missing_record_is_named_once_by_the_position_it_should_hold() -> None:
    records, _ = _chain(4)
    report = _check([records[0], records[2], records[3]])
    assert [(p.operations, p.what) for p in report.problems] == [
        (2, "record is missing (the log goes from position 1 to 3)")
    ]


def test_an_edited_record_is_named_once_and_its_successors_still_link() -> None:
    records, _ = _chain(3)
    edited = msgspec.structs.replace(records[1], actor="someone else")
    report = _check([records[0], edited, records[2]])
    assert [p.operations for p in report.problems] == [2] and not report.operations_ok


def test_an_empty_log_holds() -> None:
    report = _check([])
    assert report.ok and report.operations == 0 and report.to_dict()["operations"] == {
        "records": 0, "superseded": 0, "ok": True,
    }  # fmt: skip
