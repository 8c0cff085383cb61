"""Day 2 on the booted local VPS, after the first deployment (test_localvps.py) is done:
the owner's address changes, SSH keys are rotated, API keys are switched on. Each change
is made the way the README's "Day 2" chapter says, and converged with the real site.yml.

Named test_localvps_day2 so it runs after test_localvps.py (same booted host).
"""

from __future__ import annotations

import contextlib
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.localvps import day2, deploy, vps

pytestmark = pytest.mark.slow


@dataclass
class Day2:
    old_home: str
    new_home: str
    first: deploy.Recap
    first_log: str
    infra: str
    infra_rc: int
    added_keys_log_in: tuple[bool, bool]
    ssh_from: dict[str, bool]
    second: deploy.Recap | None
    second_log: str
    after_rotation: dict[str, bool]


@pytest.fixture(scope="module")
def day_two(
    local_vps: vps.LocalVPS, site_runs: deploy.SiteRuns, localvps_stack: contextlib.ExitStack
) -> Day2:
    if site_runs.second is None or site_runs.second.failed:
        pytest.skip("the first deployment did not converge")
    workdir = local_vps.workdir / "day2"
    workdir.mkdir()
    keys = (day2.make_key(workdir / "id_first"), day2.make_key(workdir / "id_second"))
    homes = (local_vps.host_addr, day2.add_home_address(local_vps))
    # The owner's address changed: admin_cidrs = the new one only, then `make tf-apply`.
    admin_cidrs = [f"{homes[1]}/32"]
    api_keys = [secrets.token_urlsafe(24)]
    firewall = day2.CloudFirewall(local_vps, localvps_stack)
    firewall.apply(admin_cidrs)
    try:
        return _day_two(local_vps, site_runs, workdir, admin_cidrs, keys, api_keys, homes)
    finally:
        # The scenarios after this one share the VPS and reach it from the first address:
        # give it back, as `make tf-apply` with the old admin_cidrs would.
        firewall.apply([str(local_vps.subnet)])


def _day_two(
    local_vps: vps.LocalVPS,
    site_runs: deploy.SiteRuns,
    workdir: Path,
    admin_cidrs: list[str],
    keys: tuple[Path, Path],
    api_keys: list[str],
    homes: tuple[str, str],
) -> Day2:
    first_key, second_key = keys
    old_home, new_home = homes
    run_key = day2.public(local_vps.key)
    # ... then `make converge` from the new address, with a second key and API keys added.
    inventory = day2.write_day2_inventory(
        site_runs.inventory,
        workdir / "inventory-1.yml",
        admin_cidrs=admin_cidrs,
        keys=[run_key, day2.public(first_key), day2.public(second_key)],
        api_keys=api_keys,
        source=new_home,
    )
    with vps.PHASES.phase("site.yml, day 2: address, keys, API"):
        first, first_log = deploy.run_site(
            inventory, workdir / "site-1.log", day2.fresh_controller(workdir)
        )
    added = (
        day2.logs_in(local_vps, first_key, new_home),
        day2.logs_in(local_vps, second_key, new_home),
    )
    ssh_from = {home: day2.port_22_answers(local_vps, home) for home in (old_home, new_home)}
    with vps.PHASES.phase("tests/infra/test_api_keys.py"):
        infra = day2.run_infra_file(inventory, "tests/infra/test_api_keys.py")
    second, second_log, after = None, "", {}
    if first.failed == 0 and first.unreachable == 0:
        # Rotation: the first key is removed from the list, converge again.
        inventory = day2.write_day2_inventory(
            site_runs.inventory,
            workdir / "inventory-2.yml",
            admin_cidrs=admin_cidrs,
            keys=[run_key, day2.public(second_key)],
            api_keys=api_keys,
            source=new_home,
        )
        with vps.PHASES.phase("site.yml, day 2: key removed"):
            second, second_log = deploy.run_site(
                inventory, workdir / "site-2.log", day2.fresh_controller(workdir)
            )
        after = {
            name: day2.logs_in(local_vps, key, new_home)
            for name, key in (("run", local_vps.key), ("first", first_key), ("second", second_key))
        }
    return Day2(
        old_home,
        new_home,
        first,
        first_log,
        infra.stdout + infra.stderr,
        infra.returncode,
        added,
        ssh_from,
        second,
        second_log,
        after,
    )


def test_admin_address_change_converge_from_the_new_address_succeeds(day_two: Day2) -> None:
    assert (day_two.first.failed, day_two.first.unreachable) == (0, 0), day_two.first_log[-4000:]


def test_admin_address_change_the_new_address_reaches_ssh(day_two: Day2) -> None:
    assert day_two.ssh_from[day_two.new_home] is True


def test_admin_address_change_the_old_address_is_refused_on_port_22(day_two: Day2) -> None:
    assert day_two.ssh_from[day_two.old_home] is False


def test_ssh_key_rotation_added_keys_are_authorised(day_two: Day2) -> None:
    assert day_two.added_keys_log_in == (True, True)


def test_ssh_key_rotation_the_removed_key_is_refused(day_two: Day2) -> None:
    assert day_two.second is not None, "the day-2 converge failed"
    assert day_two.after_rotation["first"] is False


@pytest.mark.parametrize("key", ["run", "second"])
def test_ssh_key_rotation_the_kept_keys_still_log_in(day_two: Day2, key: str) -> None:
    assert day_two.after_rotation.get(key) is True


def test_ssh_key_rotation_converge_changes_only_the_authorised_keys(day_two: Day2) -> None:
    """With API keys on since the converge before, everything else stays as it was."""
    assert day_two.second is not None, "the day-2 converge failed"
    changed = deploy.changed_tasks(day_two.second_log)
    assert [t for t in changed if "Authorize exactly the listed SSH keys" not in t] == []
    assert day_two.second.changed == 1, changed


def test_api_key_through_edge_on_the_vps(day_two: Day2) -> None:
    """tests/infra/test_api_keys.py against the VPS: bearer 200, wrong key 401, nothing
    401, basic auth 200, the openai SDK with the key."""
    passed = re.search(r"(\d+) passed", day_two.infra)
    assert (day_two.infra_rc, passed and int(passed.group(1))) == (0, 5), day_two.infra[-3000:]
