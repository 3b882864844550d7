# SPDX-License-Identifier: MIT
"""VMs on several hosts: one reservation state, and a live migration that needs no handover.

A VM is a client process named with ``-name guest=NAME`` (as QEMU is); under
``initiator-rule=vm-name`` it is initiator ``vm:NAME`` on every daemon, on every host.  With
the store shared, a VM that moves to another host arrives as the same I_T nexus: its
registration and reservation are simply there (issue 12: "with the shared store and vm-name
initiators a migration needs no handover at all; show it").
"""

from __future__ import annotations

import os
from pathlib import Path

import qompr
from qompr.managers.emulated import PRManagerEmulated
from qompr.options import create_objects
from qompr.scsi import Nexus
from qompr.scsi import Opcode
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutAction
from qompr.scsi import PrType
from qompr.scsi import ReadFullStatusData
from qompr.scsi import ReadKeysData
from qompr.scsi import ReadReservationData
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.testing import pr_out_command

from .conftest import SharedStore
from .harness import AgentProcess
from .harness import Agents
from .harness import Cluster
from .harness import backend
from .harness import lu_file

K_X, K_Y = 0x7878_0000_0000_0001, 0x7979_0000_0000_0002
WE = PrType.WRITE_EXCLUSIVE
WRITE_10 = bytes((Opcode.WRITE_10, 0, 0, 0, 0, 1, 0, 0, 1, 0))


def read(action: PrInAction) -> bytes:
    return PrInCdb(action, 4096).to_bytes()


def good(result: ScsiResult) -> ScsiResult:
    assert result.status == ScsiStatus.GOOD, result
    return result


def reservation(agent: AgentProcess, lu: str) -> tuple[int, int] | None:
    data = ReadReservationData.from_bytes(
        good(agent.result(lu, read(PrInAction.READ_RESERVATION))).data
    )
    if not data.has_reservation:
        return None
    assert data.type is not None
    return int(data.type), data.reservation_key


def full_status(agent: AgentProcess, lu: str) -> bytes:
    return good(agent.result(lu, read(PrInAction.READ_FULL_STATUS))).data


def test_two_vms_on_two_hosts_see_one_reservation_state(
    shared_store: SharedStore, tmp_path: Path
) -> None:
    lu = lu_file(tmp_path, "shared-disk")
    spec = backend(shared_store.state, extra=shared_store.extra)
    with Cluster(spec, tmp_path, 2) as hosts, Agents(["vm1", "vm2"]) as vms:
        vm1, vm2 = vms["vm1"], vms["vm2"]
        vm1.connect(hosts.sockets[0])
        vm2.connect(hosts.sockets[1])
        good(vm1.result(lu, *pr_out_command(PrOutAction.REGISTER, sark=K_X)))
        good(vm1.result(lu, *pr_out_command(PrOutAction.RESERVE, rk=K_X, pr_type=WE)))
        # Host 1 sees what host 0 did...
        assert reservation(vm2, lu) == (WE, K_X)
        good(vm2.result(lu, *pr_out_command(PrOutAction.REGISTER, sark=K_Y)))
        conflict = vm2.result(lu, *pr_out_command(PrOutAction.RESERVE, rk=K_Y, pr_type=WE))
        assert conflict.status == ScsiStatus.RESERVATION_CONFLICT
        # ...the same bytes through either host, with each VM's own TransportID.
        status = full_status(vm1, lu)
        assert status == full_status(vm2, lu)
        descriptors = ReadFullStatusData.from_bytes(status).descriptors
        assert [(d.transport_id, d.reservation_key, d.r_holder) for d in descriptors] == [
            (vm1.transport_id, K_X, True),
            (vm2.transport_id, K_Y, False),
        ]
        # A PREEMPT on host 1 reaches the VM on host 0 as a unit attention.
        preempt = pr_out_command(PrOutAction.PREEMPT, rk=K_Y, sark=K_X, pr_type=WE)
        good(vm2.result(lu, *preempt))
        told = vm1.result(lu, read(PrInAction.READ_KEYS))
        assert told.status == ScsiStatus.CHECK_CONDITION
        assert told.sense_code == SenseCode.REGISTRATIONS_PREEMPTED
        keys = ReadKeysData.from_bytes(good(vm1.result(lu, read(PrInAction.READ_KEYS))).data)
        assert list(keys.keys) == [K_Y]
        assert reservation(vm1, lu) == (WE, K_Y)


def software_target(spec: str) -> PRManagerEmulated:
    """The same backend in this process: a software target on the destination host that
    checks the VM's other commands (READ, WRITE...) against the shared state."""
    tree = qompr.new_tree(load_entrypoints=False)
    (manager,) = create_objects(tree, [spec.replace("id=emu", "id=target")])
    assert isinstance(manager, PRManagerEmulated)
    return manager


def test_live_migration_needs_no_handover_with_vm_names_and_a_shared_store(
    shared_store: SharedStore, tmp_path: Path
) -> None:
    lu = lu_file(tmp_path, "shared-disk")
    spec = backend(shared_store.state, extra=shared_store.extra)
    with Cluster(spec, tmp_path, 3) as hosts, Agents(["x", "y"]) as vms:
        source, other = vms["x"], vms["y"]
        source.connect(hosts.sockets[0])  # VM x runs on host A
        other.connect(hosts.sockets[2])  # VM y on host C
        good(source.result(lu, *pr_out_command(PrOutAction.REGISTER, sark=K_X)))
        good(source.result(lu, *pr_out_command(PrOutAction.RESERVE, rk=K_X, pr_type=WE)))
        good(other.result(lu, *pr_out_command(PrOutAction.REGISTER, sark=K_Y)))
        before = full_status(other, lu)

        # The migration: QEMU on host B, another process with the same -name, connects to
        # B's daemon.  Nobody runs a handover.
        destination = AgentProcess("x")
        try:
            destination.connect(hosts.sockets[1])
            assert destination.transport_id == source.transport_id
            # It is the same I_T nexus: the holder, with the guest's key.
            assert reservation(destination, lu) == (WE, K_X)
            assert full_status(destination, lu) == before  # one registration for vm:x
            again = pr_out_command(PrOutAction.RESERVE, rk=K_X, pr_type=WE)
            good(destination.result(lu, *again))  # only the holder gets GOOD here
            theirs = pr_out_command(PrOutAction.RESERVE, rk=K_Y, pr_type=WE)
            refused = other.result(lu, *theirs)
            assert refused.status == ScsiStatus.RESERVATION_CONFLICT  # y is not the holder
            # The source's connection closes (its QEMU exits after the switch-over).
            source.close()
            # Its writes on host B pass the reservation as the holder's; y's do not.
            target = software_target(spec)
            fd = os.open(lu, os.O_RDWR)
            try:
                assert target.check_command(fd, WRITE_10, nexus=Nexus("vm:x")) is None
                blocked = target.check_command(fd, WRITE_10, nexus=Nexus("vm:y"))
                assert blocked is not None
                assert blocked.status == ScsiStatus.RESERVATION_CONFLICT
            finally:
                os.close(fd)
                target.unparent()
            # And its PR commands act as the same nexus: RELEASE with the guest's key.
            release = pr_out_command(PrOutAction.RELEASE, rk=K_X, pr_type=WE)
            good(destination.result(lu, *release))
            assert reservation(other, lu) is None
            keys = ReadKeysData.from_bytes(good(other.result(lu, read(PrInAction.READ_KEYS))).data)
            assert list(keys.keys) == [K_X, K_Y]  # still one registration for vm:x
        finally:
            destination.close()


def test_with_pid_identities_the_destination_would_be_another_nexus(
    shared_store: SharedStore, tmp_path: Path
) -> None:
    """The contrast: ``initiator-rule=pid`` (host-local identities) makes the destination a
    stranger, which is why migration then needs a handover (``qompr migrate``)."""
    lu = lu_file(tmp_path, "shared-disk")
    spec = backend(shared_store.state, extra=shared_store.extra).replace(
        "initiator-rule=vm-name", "initiator-rule=pid"
    )
    with Cluster(spec, tmp_path, 2) as hosts, Agents(["x"]) as vms:
        source = vms["x"]
        source.connect(hosts.sockets[0])
        good(source.result(lu, *pr_out_command(PrOutAction.REGISTER, sark=K_X)))
        good(source.result(lu, *pr_out_command(PrOutAction.RESERVE, rk=K_X, pr_type=WE)))
        destination = AgentProcess("x")
        try:
            destination.connect(hosts.sockets[1])
            again = pr_out_command(PrOutAction.RESERVE, rk=K_X, pr_type=WE)
            refused = destination.result(lu, *again)
            assert refused.status == ScsiStatus.RESERVATION_CONFLICT
        finally:
            destination.close()
