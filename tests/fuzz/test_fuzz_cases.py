"""The fuzz generator and checks of bench.fuzz_http: reproducible cases, and what counts as a failure."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.fuzz_http import GENERATORS, SURFACES, Case, Service, problems


@pytest.mark.parametrize("surface", SURFACES)
def test_a_case_depends_on_its_seed_alone(surface: str) -> None:
    generate = GENERATORS[surface]
    assert [generate(seed) for seed in range(50)] == [generate(seed) for seed in range(50)]
    assert len({generate(seed) for seed in range(50)}) > 40


@pytest.mark.parametrize("surface", SURFACES)
def test_the_generator_reaches_the_known_bad_inputs(surface: str) -> None:
    cases = [GENERATORS[surface](seed) for seed in range(400)]
    sent = [(c.path + " " + (c.body or b"").decode(errors="replace")) for c in cases]
    assert any("9999-12-31T23:59:59-12:00" in s or "9999-12-31T23%3A59%3A59-12%3A00" in s for s in sent)
    assert {c.method for c in cases} > {"POST" if surface != "feed" else "GET"}
    if surface != "feed":
        assert any(c.hangup for c in cases)
        assert any(c.content_type != "application/json" for c in cases)
        invalid = 0
        for c in cases:
            try:
                orjson.loads(c.body or b"")
            except orjson.JSONDecodeError:
                invalid += 1
        assert invalid > 10


def _case(**changes: Any) -> Case:
    return dataclasses.replace(
        Case("extender", 1, "POST", "/filter", b"{}", "application/json", ""), **changes
    )


def test_problems_flags_5xx_and_non_json_errors_but_not_json_4xx() -> None:
    assert problems(_case(), 200, b"[]") == []
    assert problems(_case(), 400, b'{"Error": "Pod: required"}') == []
    assert problems(_case(), 500, b'{"Error": "boom"}') == ["5xx"]
    assert problems(_case(), 404, b"404: Not Found") == ["non-JSON 404 body"]
    long = _case(method="GET", path="/v1/best?x=" + "z" * 9000)
    assert problems(long, 400, b"Got more than 8190 bytes") == [
        "non-JSON 400 body from the HTTP parser (long line)"
    ]


def test_problems_requires_the_webhook_to_echo_uid_and_version() -> None:
    case = _case(surface="webhook", path="/mutate", expect_uid="u1", expect_version="admission.k8s.io/v1")
    ok = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "u1"}}
    assert problems(case, 200, orjson.dumps(ok)) == []
    empty = {**ok, "response": {"uid": "", "allowed": True}}
    assert problems(case, 400, orjson.dumps(empty)) == ["webhook did not echo the review uid"]
    other = {**ok, "apiVersion": "admission.k8s.io/v1beta1"}
    assert problems(case, 200, orjson.dumps(other)) == ["webhook answered in another apiVersion"]


def test_the_webhook_expects_a_uid_only_from_an_admission_review() -> None:
    with_uid = [GENERATORS["webhook"](seed) for seed in range(200)]
    expecting = [c for c in with_uid if c.expect_uid is not None]
    assert 50 < len(expecting) < 200
    for c in expecting:
        review = orjson.loads(c.body or b"")
        assert review["kind"] == "AdmissionReview"
        assert review["request"]["uid"] == c.expect_uid
        assert review["apiVersion"] == c.expect_version


def test_error_lines_of_an_earlier_run_in_the_same_log_are_not_counted(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text('{"level": "error", "msg": "from yesterday"}\nTraceback (most recent call last):\n')
    argv = [sys.executable, "-c", 'print(\'{"level": "error", "msg": "now"}\')']
    service = Service("svc", argv, {}, 0, log)
    service.start()
    assert service.proc is not None
    service.proc.wait(30)
    assert service.error_log_lines() == 1
