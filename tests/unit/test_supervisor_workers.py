"""How many gateway processes the local runner starts, and what each is called."""

from __future__ import annotations

import pytest

from shared.supervisor import gateway_workers, processes_of


def test_one_gateway_unless_asked_for_more() -> None:
    assert gateway_workers({}) == 1
    assert gateway_workers({"CODITECT_GATEWAY_WORKERS": " "}) == 1
    assert gateway_workers({"CODITECT_GATEWAY_WORKERS": "3"}) == 3


@pytest.mark.parametrize("text", ["0", "-1", "two", "1.5", "65"])
def test_a_bad_worker_count_is_refused_with_its_variable_named(text: str) -> None:
    with pytest.raises(ValueError, match="CODITECT_GATEWAY_WORKERS"):
        gateway_workers({"CODITECT_GATEWAY_WORKERS": text})


def test_gateways_beyond_the_first_share_the_port_under_names_of_their_own() -> None:
    assert processes_of("gateway", 1) == [("gateway", {})]
    assert processes_of("auth", 3) == [("auth", {})]
    shared = {"CODITECT_GATEWAY_REUSE_PORT": "true"}
    assert processes_of("gateway", 3) == [("gateway", shared), ("gateway-2", shared), ("gateway-3", shared)]
