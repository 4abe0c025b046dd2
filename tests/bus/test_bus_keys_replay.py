"""Key files (swarm keygen, unsafe modes refused with the fix) and the durable replay
state (sender epochs, receiver floors) of swarm.bus."""

from __future__ import annotations

import os

import pytest

from swarm.bus.keys import KeyFileError, SwarmKey, generate_key_file, load_key, main
from swarm.bus.replay import EARLIEST_PLAUSIBLE_UNIX, EPOCH_FILE, FloorStore, ReplayStateError, \
    claim_epoch, read_epoch

#: A wall clock that was never set (a Raspberry Pi without RTC before NTP): 1970.
UNSET_CLOCK = lambda: 12.0  # noqa: E731


def test_keygen_writes_a_private_hex_key_that_loads(tmp_path, capsys):
    path = tmp_path / "swarm.key"
    assert main(["--out", str(path)]) == 0
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    text = path.read_text()
    assert len(text) == 65 and text.endswith("\n")
    key = load_key(path)
    assert key.secret == bytes.fromhex(text.strip())
    assert key.key_id.hex() in capsys.readouterr().out
    # Refuses to clobber an existing key without --force.
    assert main(["--out", str(path)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["--out", str(path), "--force"]) == 0
    assert load_key(path) != key


def test_raw_32_byte_key_files_load(tmp_path):
    path = tmp_path / "raw.key"
    path.write_bytes(bytes(range(32)))
    path.chmod(0o400)
    assert load_key(path).secret == bytes(range(32))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_group_or_world_accessible_key_files_are_refused_with_the_fix(tmp_path, mode):
    path = tmp_path / "swarm.key"
    generate_key_file(path)
    path.chmod(mode)
    with pytest.raises(KeyFileError) as err:
        load_key(path)
    assert str(path) in str(err.value) and f"chmod 600 {path}" in str(err.value)


@pytest.mark.parametrize("content", [b"", b"abc", b"zz" * 32, b"00" * 31, b"\x00" * 31])
def test_files_that_hold_no_key_are_refused(tmp_path, content):
    path = tmp_path / "k"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="holds no key"):
        load_key(path)


def test_missing_key_file_names_keygen(tmp_path):
    with pytest.raises(KeyFileError, match="swarm keygen --out"):
        load_key(tmp_path / "nope")


def test_key_repr_hides_the_secret():
    key = SwarmKey(b"\xab" * 32)
    assert "ab" * 4 not in repr(key) and key.key_id.hex() in repr(key)


def test_epochs_increase_across_restarts_and_are_durable(tmp_path):
    assert [claim_epoch(tmp_path, UNSET_CLOCK) for _ in range(3)] == [1, 2, 3]
    assert (tmp_path / EPOCH_FILE).read_text() == "3\n"
    assert read_epoch(tmp_path) == 3
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_a_first_epoch_is_the_wall_clock_so_a_wiped_folder_starts_above_its_old_epochs(tmp_path):
    """A drone whose data folder was wiped or reflashed has no bus-epoch, but every peer
    still holds the floor of its earlier life: its first epoch must be above that."""
    t0 = EARLIEST_PLAUSIBLE_UNIX + 1000
    old_life = tmp_path / "old"
    old_life.mkdir()
    before_wipe = [claim_epoch(old_life, lambda: t0 + k) for k in range(3)]
    assert before_wipe == [t0, t0 + 1, t0 + 2]
    wiped = tmp_path / "reflashed"
    wiped.mkdir()
    assert claim_epoch(wiped, lambda: t0 + 60) > max(before_wipe)


def test_the_file_keeps_epochs_increasing_when_the_clock_stands_still_or_steps_back(tmp_path):
    t = EARLIEST_PLAUSIBLE_UNIX + 5000
    assert claim_epoch(tmp_path, lambda: t + 0.9) == t
    assert claim_epoch(tmp_path, lambda: t + 0.5) == t + 1         # same second
    assert claim_epoch(tmp_path, lambda: t - 3600) == t + 2        # NTP stepped back an hour
    # A Raspberry Pi with no RTC booting at 1970 before NTP: the clock is ignored, the
    # intact folder still gives the next epoch.
    assert claim_epoch(tmp_path, UNSET_CLOCK) == t + 3
    # The 8-byte envelope field holds any epoch the clock can give.
    assert (tmp_path / EPOCH_FILE).read_text() == f"{t + 3}\n"


def test_an_unset_clock_and_a_wiped_folder_start_at_1(tmp_path):
    """Documented limit (docs/agent.md, "A wiped data folder"): peers refuse such a node
    as stale_epoch (and warn) until it restarts with its clock set."""
    assert claim_epoch(tmp_path, UNSET_CLOCK) == 1
    assert claim_epoch(tmp_path, lambda: EARLIEST_PLAUSIBLE_UNIX + 7) == EARLIEST_PLAUSIBLE_UNIX + 7


@pytest.mark.parametrize("content", ["", "abc", "-1", "0", str(2**64)])
def test_a_corrupt_epoch_file_is_an_error_not_a_reset(tmp_path, content):
    (tmp_path / EPOCH_FILE).write_text(content)
    with pytest.raises(ReplayStateError, match=EPOCH_FILE):
        claim_epoch(tmp_path)
    with pytest.raises(ReplayStateError, match=EPOCH_FILE):
        read_epoch(tmp_path)
    assert (tmp_path / EPOCH_FILE).read_text() == content  # refused, not rewritten


def test_floor_store_round_trips_and_rejects_garbage(tmp_path):
    store = FloorStore(tmp_path)
    assert store.load() == {}
    store.save({2: (3, 40), 7: (1, 2**64 - 1)})
    assert FloorStore(tmp_path).load() == {2: (3, 40), 7: (1, 2**64 - 1)}
    for bad in [b"{", b"[]", b'{"v": 2, "floors": {}}', b'{"v": 1, "floors": {"0": [1, 1]}}',
                b'{"v": 1, "floors": {"x": [1, 1]}}', b'{"v": 1, "floors": {"2": [1]}}',
                b'{"v": 1, "floors": {"2": [1, -1]}}']:
        store.path.write_bytes(bad)
        with pytest.raises(ReplayStateError, match="bus-floors.json"):
            store.load()


def test_epoch_and_floor_files_make_replay_protection_survive_restarts_of_both_ends(tmp_path):
    """The composition the agent makes (swarm/agent/node.py): claim_epoch for the sealer,
    FloorStore.load / save for the opener."""
    from consensus.types import Message, MessageType
    from swarm.bus import (EnvelopeOpener, EnvelopeSealer, Keyring, RejectReason,
                           claim_epoch)

    ring = Keyring(SwarmKey.generate())
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()

    def sealer():
        return EnvelopeSealer("fire", 1, ring, claim_epoch(a))

    def opener():
        store = FloorStore(b)
        return EnvelopeOpener("fire", 2, ring, floors=store.load(),
                              on_epoch_advance=store.save, clock=lambda: 0.0)

    vote = Message(MessageType.VOTE, to=2, frm=1, term=3)
    old = sealer().seal(2, [vote])[0]
    assert opener().open(old).messages == (vote,)
    # Receiver restart: the epoch it accepted was persisted when it advanced.
    rx = opener()
    assert rx.open(old).reason is RejectReason.REPLAYED
    # Sender restart: a new epoch, fresh again; the old epoch is now stale, also after
    # another receiver restart.
    tx = sealer()
    assert tx.epoch > int.from_bytes(old[14:22], "big")  # the header's epoch field
    assert rx.open(tx.seal(2, [vote])[0]).messages == (vote,)
    assert opener().open(old).reason is RejectReason.STALE_EPOCH


def test_read_private_file_checks_the_mode_of_what_it_reads_and_refuses_links_unless_told(tmp_path):
    """The one check of a secret file (the swarm key, the MQTT password, TLS keys): a
    symlink is refused for the swarm key, followed for the others (certbot's live/
    links), and either way the mode checked is that of the file read."""
    from swarm.bus.keys import read_private_file

    target = tmp_path / "secret"
    target.write_bytes(b"pw\n")
    target.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(target)
    assert read_private_file(link, "[bus] password_file", 100, follow_symlinks=True) == b"pw\n"
    with pytest.raises(KeyFileError, match="not a symlink"):
        read_private_file(link, "key file", 100)
    target.chmod(0o640)
    with pytest.raises(KeyFileError) as err:
        read_private_file(link, "[bus] password_file", 100, follow_symlinks=True)
    assert str(err.value).startswith(f"[bus] password_file {link} is accessible by group")
    assert f"chmod 600 {link}" in str(err.value)
    with pytest.raises(KeyFileError, match="does not exist"):
        read_private_file(tmp_path / "nope", "[bus] password_file", 100)
