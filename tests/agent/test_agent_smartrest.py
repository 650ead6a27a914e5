from __future__ import annotations

import csv
import io

import pytest

from agent import smartrest
from agent.smartrest import ConnectRequest, SmartRestError, parse_connect, parse_lines


def test_a_six_field_connect_request_carries_its_operation_id() -> None:
    [fields] = parse_lines("530,SN1,10.0.0.67,5900,k3y,42")
    assert parse_connect(fields) == ConnectRequest("SN1", "10.0.0.67", 5900, "k3y", "42")


def test_a_five_field_connect_request_has_no_operation_id() -> None:
    [fields] = parse_lines("530,SN1,plc.local,23,k3y")
    assert parse_connect(fields).operation_id is None


def test_quoted_fields_are_read_as_rfc_4180_says() -> None:
    [fields] = parse_lines('530,"SN,1","a ""b""",22,k,7')
    assert fields == ["530", "SN,1", 'a "b"', "22", "k", "7"]


def test_a_frame_may_hold_several_lines() -> None:
    assert parse_lines("ERR,one\r\n\r\nERR,two\n") == [["ERR", "one"], ["ERR", "two"]]


@pytest.mark.parametrize(
    "line, message",
    [
        ("530,SN1,host,22", "5 or 6"),
        ("530,SN1,host,ssh,k,1", "invalid port"),
        ("530,SN1,host,70000,k,1", "invalid port"),
        ("530,SN1,,22,k,1", "host name"),
        ("530,SN1,host,22,,1", "connection key"),
    ],
)
def test_a_bad_connect_request_is_refused_without_echoing_its_key(line: str, message: str) -> None:
    [fields] = parse_lines(line)
    with pytest.raises(SmartRestError, match=message) as info:
        parse_connect(fields)
    assert ",k," not in str(info.value)


def test_status_lines_use_the_operation_id_when_there_is_one() -> None:
    assert smartrest.executing("42") == "504,42"
    assert smartrest.successful("42") == "506,42"
    assert (
        smartrest.failed("42", "connection refused by 10.0.0.67:5900")
        == '505,42,"connection refused by 10.0.0.67:5900"'
    )


def test_status_lines_fall_back_to_the_fragment_name_without_an_operation_id() -> None:
    assert smartrest.executing(None) == "501,c8y_RemoteAccessConnect"
    assert smartrest.successful(None) == "503,c8y_RemoteAccessConnect"
    assert (
        smartrest.failed(None, "no route to host 10.0.0.67")
        == '502,c8y_RemoteAccessConnect,"no route to host 10.0.0.67"'
    )


def test_a_reason_with_quotes_commas_and_newlines_survives_a_csv_reader() -> None:
    line = smartrest.failed("7", 'cannot connect to "plc", port 23\nsecond line')
    assert "\n" not in line
    assert next(csv.reader(io.StringIO(line))) == ["505", "7", 'cannot connect to "plc", port 23 second line']
