"""Download file names: one rule, discovery-<kind>[-<part>...]-<YYYYmmdd-HHMM>.<ext> in UTC."""

import re

from console import cache_view as cv
from console import rollout_view as rv
from console import tuning_view as tv
from console.naming import download_name, slug, stamp


def test_stamp_is_the_utc_minute():
    assert stamp(0) == "19700101-0000"
    assert stamp(1_700_000_000.0) == "20231114-2213"
    assert re.fullmatch(r"\d{8}-\d{4}", stamp())


def test_download_name_joins_kind_parts_and_stamp():
    assert download_name("alert-history", "csv", now=0) == "discovery-alert-history-19700101-0000.csv"
    assert download_name("evidence", "csv", "ent-42", now=0) == "discovery-evidence-ent-42-19700101-0000.csv"
    assert (
        download_name("tuning-study", "json", 7, "best-config", now=0)
        == "discovery-tuning-study-7-best-config-19700101-0000.json"
    )
    assert re.fullmatch(r"discovery-x-\d{8}-\d{4}\.md", download_name("x", "md"))


def test_slug_keeps_lowercase_letters_digits_and_single_dashes():
    assert slug("Run #7 / limited") == "run-7-limited"
    assert slug("--") == ""


def test_every_console_download_uses_the_one_rule():
    assert cv.bench_file_name(0) == "discovery-store-bench-19700101-0000.json"
    assert tv.file_name("report", 3, "md", now=0) == "discovery-tuning-study-3-report-19700101-0000.md"
    assert rv.report_file_name("rollout-2-pilot", 0, "json") == "discovery-rollout-2-pilot-19700101-0000.json"
    assert rv.report_file_name("!!", 0) == "discovery-rollout-19700101-0000.md"
