"""Mission protocol state machine against a scripted vehicle (no sockets, logical time)."""

from __future__ import annotations

import itertools
import math

import pytest

from bridge_fake_vehicle import FakeVehicle, run_transfer
from mavlink_bridge.mission_protocol import (
    TRANSITIONS, AckReceived, CountReceived, ItemReceived, MissionProtocolError, MissionResult,
    MissionResultError, MissionTimeoutError, MissionTransfer, RequestReceived, SendAck,
    SendCount, SendItem, SendRequest, State, TransferTimeouts, legacy_item_to_item,
)
from mavlink_bridge.plan import (
    CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, CMD_NAV_RALLY_POINT, CMD_NAV_TAKEOFF,
    CMD_NAV_WAYPOINT, FRAME_GLOBAL, FRAME_GLOBAL_RELATIVE_ALT, MissionItem, MissionType,
)


def _mission(n: int = 6) -> list[MissionItem]:
    home = MissionItem.at(CMD_NAV_WAYPOINT, 47.0, 8.0, 500.0, frame=FRAME_GLOBAL)
    items = [home, MissionItem.at(CMD_NAV_TAKEOFF, 47.0, 8.0, 20.0)]
    items += [MissionItem.at(CMD_NAV_WAYPOINT, 47.0 + i * 1e-4, 8.0 + i * 2e-4, 30.0)
              for i in range(1, n - 1)]
    return items


def _upload_completes(vehicle: FakeVehicle, items: list[MissionItem]) -> MissionTransfer:
    """Upload ``items`` as a mission to ``vehicle``; check it finished and the vehicle holds them."""
    transfer = MissionTransfer()
    run_transfer(transfer, vehicle, transfer.start_upload(MissionType.MISSION, items, 0.0))
    assert transfer.state is State.DONE
    assert vehicle.lists[MissionType.MISSION] == items
    return transfer


def _fence() -> list[MissionItem]:
    corners = [(47.001, 8.001), (47.001, 8.002), (47.002, 8.002), (47.002, 8.001)]
    return [MissionItem.at(CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, lat, lon, 0.0,
                           param1=float(len(corners))) for lat, lon in corners]


def _rally() -> list[MissionItem]:
    return [MissionItem.at(CMD_NAV_RALLY_POINT, 47.003, 8.003, 25.0)]


# -- happy paths ---------------------------------------------------------------------


@pytest.mark.parametrize("mission_type, items", [
    (MissionType.MISSION, _mission()), (MissionType.FENCE, _fence()),
    (MissionType.RALLY, _rally())])
@pytest.mark.parametrize("legacy", [True, False])
def test_upload_then_download_round_trips_every_type(mission_type, items, legacy):
    vehicle = FakeVehicle(legacy_requests=legacy)
    transfer = MissionTransfer()
    run_transfer(transfer, vehicle, transfer.start_upload(mission_type, items, 0.0))
    assert transfer.state is State.DONE and transfer.error is None
    assert vehicle.lists[mission_type] == items
    # the other lists are untouched: the three types are stored independently
    assert all(vehicle.lists[t] == [] for t in MissionType if t != mission_type)

    down = MissionTransfer()
    run_transfer(down, vehicle, down.start_download(mission_type, 10.0), now=10.0)
    assert down.state is State.DONE
    assert down.items == tuple(items)


def test_upload_answers_requests_with_mission_item_int_in_order():
    transfer = MissionTransfer()
    items = _mission(3)
    assert transfer.start_upload(MissionType.MISSION, items, 0.0) == [
        SendCount(3, MissionType.MISSION)]
    out = transfer.receive(RequestReceived(0, MissionType.MISSION, legacy=True), 0.1)
    assert out == [SendItem(0, items[0], MissionType.MISSION)]
    assert transfer.state is State.UPLOAD_SENDING


def test_empty_upload_completes_on_accepted_ack():
    vehicle = FakeVehicle()
    vehicle.lists[MissionType.MISSION] = _mission()
    transfer = MissionTransfer()
    run_transfer(transfer, vehicle, transfer.start_upload(MissionType.MISSION, [], 0.0))
    assert transfer.state is State.DONE
    assert vehicle.lists[MissionType.MISSION] == []


def test_clear_all_completes_on_accepted_ack():
    vehicle = FakeVehicle()
    vehicle.lists[MissionType.FENCE] = _fence()
    transfer = MissionTransfer()
    run_transfer(transfer, vehicle, transfer.start_clear(MissionType.FENCE, 0.0))
    assert transfer.state is State.DONE
    assert vehicle.lists[MissionType.FENCE] == []


def test_download_of_empty_list_sends_ack_and_returns_no_items():
    transfer = MissionTransfer()
    transfer.start_download(MissionType.RALLY, 0.0)
    out = transfer.receive(CountReceived(0, MissionType.RALLY), 0.1)
    assert out == [SendAck(MissionResult.ACCEPTED, MissionType.RALLY)]
    assert transfer.state is State.DONE and transfer.items == ()


# -- loss, duplication, reordering ---------------------------------------------------


def test_upload_survives_lost_requests_through_vehicle_re_requests():
    lost = itertools.count()
    # every request for item 2 and item 4 is lost twice before getting through
    drops = {2: 2, 4: 2}

    def drop_out(event):
        if isinstance(event, RequestReceived) and drops.get(event.seq, 0) > 0:
            drops[event.seq] -= 1
            next(lost)
            return True
        return False

    items = _mission(6)
    _upload_completes(FakeVehicle(drop_out=drop_out), items)
    assert next(lost) == 4


def test_upload_survives_lost_items_and_lost_count():
    dropped = {"count": 1, "item3": 2}

    def drop_in(action):
        if isinstance(action, SendCount) and dropped["count"]:
            dropped["count"] -= 1
            return True
        if isinstance(action, SendItem) and action.seq == 3 and dropped["item3"]:
            dropped["item3"] -= 1
            return True
        return False

    items = _mission(6)
    transfer = _upload_completes(FakeVehicle(drop_in=drop_in), items)
    assert transfer.stats.resends >= 1  # the lost MISSION_COUNT was resent


def test_upload_answers_duplicate_requests_again():
    first_time: set[int] = set()

    def duplicate_first_request(event):
        # each seq's first request arrives twice (a radio retransmission, say)
        if isinstance(event, RequestReceived) and event.seq not in first_time:
            first_time.add(event.seq)
            return True
        return False

    items = _mission(5)
    transfer = _upload_completes(FakeVehicle(duplicate_out=duplicate_first_request), items)
    assert transfer.stats.duplicate_requests >= len(items)
    # every duplicate was answered; the vehicle refused the stray copies with
    # INVALID_SEQUENCE and re-requested, which the uploader rides through
    assert transfer.stats.invalid_sequence_acks >= len(items) - 1
    assert transfer.stats.resends == 0


def test_upload_answers_out_of_order_request():
    transfer = MissionTransfer()
    items = _mission(4)
    transfer.start_upload(MissionType.MISSION, items, 0.0)
    transfer.receive(RequestReceived(0, MissionType.MISSION), 0.1)
    out = transfer.receive(RequestReceived(2, MissionType.MISSION), 0.2)
    assert out == [SendItem(2, items[2], MissionType.MISSION)]
    assert transfer.stats.out_of_order == 1


def test_download_recovers_lost_items_by_re_requesting():
    drops = {1: 1, 3: 3}

    def drop_out(event):
        if isinstance(event, ItemReceived) and drops.get(event.seq, 0) > 0:
            drops[event.seq] -= 1
            return True
        return False

    vehicle = FakeVehicle(drop_out=drop_out)
    items = _mission(6)
    vehicle.lists[MissionType.MISSION] = list(items)
    transfer = MissionTransfer()
    end = run_transfer(transfer, vehicle, transfer.start_download(MissionType.MISSION, 0.0))
    assert transfer.state is State.DONE and transfer.items == tuple(items)
    assert transfer.stats.resends == 4
    # each resend waited the spec's 250 ms item timeout, in logical time
    assert math.isclose(end, 4 * 0.25)


def test_download_drops_out_of_sequence_item_and_re_requests_expected():
    transfer = MissionTransfer()
    items = _fence()
    transfer.start_download(MissionType.FENCE, 0.0)
    transfer.receive(CountReceived(4, MissionType.FENCE), 0.0)
    out = transfer.receive(ItemReceived(2, items[2], MissionType.FENCE), 0.1)
    assert out == [SendRequest(0, MissionType.FENCE)]
    assert transfer.stats.out_of_order == 1
    assert transfer.receive(ItemReceived(0, items[0], MissionType.FENCE), 0.2) == [
        SendRequest(1, MissionType.FENCE)]
    # a late duplicate of item 0 is dropped without a new request
    assert transfer.receive(ItemReceived(0, items[0], MissionType.FENCE), 0.3) == []


def test_download_accepts_legacy_mission_item():
    item = legacy_item_to_item(CMD_NAV_WAYPOINT, FRAME_GLOBAL_RELATIVE_ALT, 0, 0, 0, 0,
                               47.1234567, 8.7654321, 30.0, 1)
    assert (item.x, item.y, item.frame) == (471234567, 87654321, FRAME_GLOBAL_RELATIVE_ALT)
    with pytest.raises(ValueError):
        legacy_item_to_item(CMD_NAV_WAYPOINT, FRAME_GLOBAL, 0, 0, 0, 0, math.nan, 8.0, 1.0, 1)


def test_messages_for_another_mission_type_are_ignored():
    transfer = MissionTransfer()
    transfer.start_upload(MissionType.FENCE, _fence(), 0.0)
    assert transfer.receive(RequestReceived(0, MissionType.MISSION), 0.1) == []
    assert transfer.receive(AckReceived(MissionResult.ERROR, MissionType.RALLY), 0.1) == []
    assert transfer.state is State.UPLOAD_AWAIT_REQUEST
    assert transfer.stats.ignored == 2


# -- NACKs ---------------------------------------------------------------------------


_ERRORS = [r for r in MissionResult if r not in (MissionResult.ACCEPTED,)]


@pytest.mark.parametrize("result", _ERRORS, ids=lambda r: r.mav_name)
def test_nack_of_count_fails_upload_with_named_result(result):
    vehicle = FakeVehicle(refuse_count_with=int(result))
    transfer = MissionTransfer()
    run_transfer(transfer, vehicle, transfer.start_upload(MissionType.MISSION, _mission(), 0.0))
    assert transfer.state is State.FAILED
    assert isinstance(transfer.error, MissionResultError)
    assert transfer.error.result is result
    assert result.mav_name in str(transfer.error)
    assert vehicle.lists[MissionType.MISSION] == []


@pytest.mark.parametrize("result", [r for r in _ERRORS if r is not MissionResult.INVALID_SEQUENCE],
                         ids=lambda r: r.mav_name)
def test_nack_of_item_mid_upload_fails_with_named_result(result):
    vehicle = FakeVehicle(refuse_item_with=(3, int(result)))
    old = _mission(3)
    vehicle.lists[MissionType.MISSION] = list(old)
    transfer = MissionTransfer()
    run_transfer(transfer, vehicle, transfer.start_upload(MissionType.MISSION, _mission(6), 0.0))
    assert transfer.state is State.FAILED
    assert isinstance(transfer.error, MissionResultError) and transfer.error.result is result
    assert vehicle.lists[MissionType.MISSION] == old  # nothing half-applied


def test_invalid_sequence_ack_mid_upload_is_recoverable():
    transfer = MissionTransfer()
    items = _mission(3)
    transfer.start_upload(MissionType.MISSION, items, 0.0)
    transfer.receive(RequestReceived(0, MissionType.MISSION), 0.0)
    assert transfer.receive(AckReceived(MissionResult.INVALID_SEQUENCE, MissionType.MISSION), 0.1) == []
    assert transfer.state is State.UPLOAD_SENDING
    assert transfer.stats.invalid_sequence_acks == 1


def test_unknown_result_code_is_still_an_error():
    transfer = MissionTransfer()
    transfer.start_clear(MissionType.MISSION, 0.0)
    transfer.receive(AckReceived(99, MissionType.MISSION), 0.1)
    assert transfer.state is State.FAILED
    assert "unknown MAV_MISSION_RESULT 99" in str(transfer.error)


def test_nack_during_download_fails_with_named_result():
    transfer = MissionTransfer()
    transfer.start_download(MissionType.MISSION, 0.0)
    transfer.receive(AckReceived(MissionResult.DENIED, MissionType.MISSION), 0.1)
    assert isinstance(transfer.error, MissionResultError)
    assert transfer.error.result is MissionResult.DENIED


def test_accepted_before_all_items_requested_is_a_protocol_error():
    transfer = MissionTransfer()
    transfer.start_upload(MissionType.MISSION, _mission(4), 0.0)
    transfer.receive(RequestReceived(0, MissionType.MISSION), 0.1)
    transfer.receive(AckReceived(MissionResult.ACCEPTED, MissionType.MISSION), 0.2)
    assert transfer.state is State.FAILED
    assert isinstance(transfer.error, MissionProtocolError)


def test_request_beyond_count_is_a_protocol_error():
    transfer = MissionTransfer()
    transfer.start_upload(MissionType.MISSION, _mission(2), 0.0)
    transfer.receive(RequestReceived(5, MissionType.MISSION), 0.1)
    assert isinstance(transfer.error, MissionProtocolError)


# -- a vehicle that stops answering ---------------------------------------------------


def test_vehicle_silent_mid_upload_gives_timeout_not_success():
    vehicle = FakeVehicle(silent_after_items=3)
    transfer = MissionTransfer()
    end = run_transfer(transfer, vehicle, transfer.start_upload(MissionType.MISSION, _mission(8), 0.0))
    assert transfer.state is State.FAILED
    assert isinstance(transfer.error, MissionTimeoutError)
    assert "did NOT complete" in str(transfer.error)
    assert transfer.stats.resends == TransferTimeouts().max_retries
    # spec defaults: first wait + 5 retries of 1.5 s, all in logical time
    assert math.isclose(end, 6 * 1.5, rel_tol=0, abs_tol=1.5)
    assert vehicle.lists[MissionType.MISSION] == []


def test_vehicle_that_never_answers_download_times_out():
    transfer = MissionTransfer(TransferTimeouts(default_s=1.0, item_s=0.1, max_retries=2))
    actions = transfer.start_download(MissionType.MISSION, 0.0)
    assert actions
    resent = []
    now = 0.0
    while transfer.active:
        now = transfer.deadline
        resent += transfer.poll(now)
    assert len(resent) == 2
    assert isinstance(transfer.error, MissionTimeoutError)
    assert now == 3.0


def test_a_vehicle_repeating_one_request_forever_cannot_hold_the_upload_open():
    """Each duplicate MISSION_REQUEST re-armed the deadline without using the retry
    budget, so a vehicle (or a sender on the link) repeating one request every second
    kept the upload, and the Vehicle's transfer lock, busy forever (1000 s: still
    UPLOAD_SENDING). Now it gets what a silent vehicle gets: 6 x 1.5 s."""
    transfer = MissionTransfer()
    transfer.start_upload(MissionType.MISSION, _mission(4), 0.0)
    now = 0.0
    while transfer.active and now < 1000:
        now += 1.0
        transfer.receive(RequestReceived(0, MissionType.MISSION), now)
        transfer.poll(now)
    assert transfer.state is State.FAILED and now == 1.0 + 9.0  # 9 s after item 0 was new
    assert isinstance(transfer.error, MissionTimeoutError)
    assert "repeated its request for item 0 without progress" in str(transfer.error)
    assert not transfer.error.awaiting_final_ack


def test_a_vehicle_sending_items_past_the_one_requested_cannot_hold_the_download_open():
    """The same for a download: each item past the expected one re-armed the deadline."""
    transfer = MissionTransfer()
    transfer.start_download(MissionType.MISSION, 0.0)
    transfer.receive(CountReceived(3, MissionType.MISSION), 0.0)
    now = 0.0
    while transfer.active and now < 1000:
        now += 0.2
        transfer.receive(ItemReceived(2, _mission(3)[2], MissionType.MISSION), now)
        transfer.poll(now)
    assert transfer.state is State.FAILED and now <= 6 * 0.25 + 0.2
    assert isinstance(transfer.error, MissionTimeoutError)
    assert "items past it without progress" in str(transfer.error)


def test_repeated_requests_with_progress_between_still_complete():
    """Progress resets the allowance: a vehicle re-requesting every item twice, each
    repeat a second later, finishes a long upload."""
    items = _mission(20)
    transfer = MissionTransfer()
    transfer.start_upload(MissionType.MISSION, items, 0.0)
    now = 0.0
    for seq in range(len(items)):
        for _ in range(3):
            now += 1.0
            assert transfer.receive(RequestReceived(seq, MissionType.MISSION), now)
    transfer.receive(AckReceived(0, MissionType.MISSION), now)
    assert transfer.state is State.DONE


def test_vehicle_cancel_after_its_own_timeout_is_surfaced():
    # The uploader is configured slower than ArduPilot's 8 s cancel: the vehicle cancels.
    vehicle = FakeVehicle(drop_in=lambda a: isinstance(a, SendItem) and a.seq == 2)
    transfer = MissionTransfer(TransferTimeouts(default_s=20.0))
    run_transfer(transfer, vehicle, transfer.start_upload(MissionType.MISSION, _mission(5), 0.0))
    assert isinstance(transfer.error, MissionResultError)
    assert transfer.error.result is MissionResult.OPERATION_CANCELLED


# -- API guards and the table ---------------------------------------------------------


def test_starting_while_active_is_refused_and_changes_nothing():
    transfer = MissionTransfer()
    transfer.start_upload(MissionType.MISSION, _mission(), 0.0)
    with pytest.raises(RuntimeError):
        transfer.start_download(MissionType.MISSION, 0.1)
    assert transfer.state is State.UPLOAD_AWAIT_REQUEST


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError):
        TransferTimeouts(default_s=0)
    with pytest.raises(ValueError):
        TransferTimeouts(max_retries=-1)
    with pytest.raises(ValueError):
        RequestReceived(70000, MissionType.MISSION)
    with pytest.raises(TypeError):
        MissionTransfer().start_upload(MissionType.MISSION, [object()], 0.0)  # type: ignore[list-item]


def test_transition_table_names_real_handlers():
    for (state, _kind), (handler, description) in TRANSITIONS.items():
        assert callable(getattr(MissionTransfer, handler)), handler
        assert description
        assert state not in (State.IDLE, State.DONE, State.FAILED)


def test_lost_final_ack_is_reported_as_timeout_never_as_success():
    # The vehicle stored the mission but its ACCEPTED never arrived: the uploader cannot
    # know, so it must not claim success (the applier re-uploads next time).
    vehicle = FakeVehicle(drop_out=lambda e: isinstance(e, AckReceived)
                          and e.result == MissionResult.ACCEPTED)
    transfer = MissionTransfer()
    items = _mission(4)
    run_transfer(transfer, vehicle, transfer.start_upload(MissionType.MISSION, items, 0.0))
    assert transfer.state is State.FAILED
    assert isinstance(transfer.error, MissionTimeoutError)
    assert transfer.error.awaiting_final_ack
    assert "all 4 items sent" in str(transfer.error) and "did NOT complete" in str(transfer.error)
    assert vehicle.lists[MissionType.MISSION] == items  # which only a read-back can confirm


@pytest.mark.parametrize("loss", [0.1, 0.3, 0.6])
def test_random_loss_and_duplication_never_yield_false_success(loss):
    """Seeded sweep: whatever is lost or duplicated, DONE means the vehicle holds exactly
    the uploaded items (and a download returns exactly what it holds); otherwise the
    transfer FAILED with a MissionError."""
    import random
    outcomes = {"done": 0, "failed": 0}
    for seed in range(150):
        rng = random.Random(seed * 1000 + int(loss * 100))
        vehicle = FakeVehicle(drop_out=lambda e: rng.random() < loss,
                              drop_in=lambda a: rng.random() < loss,
                              duplicate_out=lambda e: rng.random() < 0.1)
        vehicle.lists[MissionType.MISSION] = _mission(3)
        items = _mission(2 + seed % 9)
        up = MissionTransfer()
        run_transfer(up, vehicle, up.start_upload(MissionType.MISSION, items, 0.0))
        if up.state is State.DONE:
            outcomes["done"] += 1
            assert vehicle.lists[MissionType.MISSION] == items
        else:
            assert up.state is State.FAILED and up.error is not None
            if not getattr(up.error, "awaiting_final_ack", False):
                outcomes["failed"] += 1  # (a lost final ACK is resolved by read-back)
        down = MissionTransfer()
        run_transfer(down, vehicle, down.start_download(MissionType.MISSION, 100.0), now=100.0)
        if down.state is State.DONE:
            assert list(down.items) == vehicle.lists[MissionType.MISSION]
        else:
            assert down.error is not None
    assert outcomes["done"] > 0
    if loss <= 0.1:
        assert outcomes["failed"] <= 3  # retries ride through light loss
