# SPDX-License-Identifier: MIT
"""Conformance: the scenarios every manager that answers like Linux LIO passes, run against a
manager described by ``-object`` strings; and the pytest plugin that runs them.

The scenarios (:mod:`qompr.testing.scenario`, package data of :mod:`qompr.testing`) drive one
logical unit from several initiators and hold every answer to what LIO answers: status,
sense, PR IN data, PRgeneration.  ``pr-manager-emulated`` passes every one of them, and
qompr's VM test bed checks them against the real LIO.  A manager under test runs those that
send only what reaches a pr-manager: PERSISTENT RESERVE IN/OUT and TEST UNIT READY
(:data:`~qompr.testing.MANAGER_OPCODES`), through no more target ports than it offers.  The
expectations are LIO's (mode ``lio``).

Each scenario gets a fresh object tree, the objects created in order from their strings
(``{tmp}`` in a string is a fresh temporary directory, for state files and sockets), and a
fresh file as its logical unit, sent commands with one I_T nexus per initiator and port
(:class:`~qompr.testing.ManagerTarget`).

From the command line (the ``qompr_conformance`` marker selects only these tests)::

    pytest -p qompr.testing.conformance -m qompr_conformance \\
        --qompr-plugin forward \\
        --qompr-object 'pr-manager-emulated,id=backend,target-ports=2' \\
        --qompr-object 'pr-manager-forward,id=under-test,target=backend' \\
        --qompr-target-ports 2

In a test module, :func:`conformance_test` makes the same tests::

    import qompr_forward
    from qompr.testing.conformance import conformance_test

    test_answers_like_lio = conformance_test(
        "pr-manager-emulated,id=backend",
        "pr-manager-forward,id=under-test,target=backend",
        plugins=[qompr_forward],
    )

This module needs pytest; the rest of :mod:`qompr.testing` does not.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import pluggy
import pytest

from qompr._compat import override
from qompr.errors import QomprError
from qompr.managers import PRManager
from qompr.managers import pr_manager_lookup
from qompr.options import HelpText
from qompr.options import process
from qompr.plugins import get_plugin_manager
from qompr.plugins import new_tree
from qompr.qom import ObjectTree
from qompr.scsi import Opcode
from qompr.testing._errors import TestingError
from qompr.testing._target import MANAGER_OPCODES
from qompr.testing._target import ManagerTarget
from qompr.testing.scenario import SCENARIO_DIR
from qompr.testing.scenario import Scenario
from qompr.testing.scenario import ScenarioFormatError
from qompr.testing.scenario import ScenarioStepError
from qompr.testing.scenario import load_all
from qompr.testing.scenario import run

__all__ = [
    "MARKER",
    "Conformance",
    "ConformanceSetupError",
    "Exclusion",
    "conformance_test",
]

#: The marker of the tests the plugin adds (``-m qompr_conformance`` runs only them).
MARKER = "qompr_conformance"
#: Size of each scenario's logical unit file.
_LU_SIZE = 1 << 20


class ConformanceSetupError(TestingError):
    """The objects under test cannot be made as described (a bad ``-object`` string, a
    missing plugin, a manager id that names no pr-manager)."""


@attrs.frozen
class Exclusion:
    """A scenario that does not apply to the manager under test, and why."""

    scenario: Scenario
    reason: str


def _opcode_name(opcode: int) -> str:
    try:
        return Opcode(opcode).name
    except ValueError:
        return f"{opcode:02x}h"


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _plugins(values: Iterable[str | object]) -> tuple[str | object, ...]:
    return tuple(values)


def _paths(values: Iterable[Path | str]) -> tuple[Path, ...]:
    return tuple(Path(v) for v in values)


@attrs.define
class Conformance:
    """The conformance scenarios against one manager, described by ``-object`` strings.

    :param objects: the objects to create for each scenario, in order, as ``-object``
        strings (QemuOpts or JSON); ``{tmp}`` is replaced by the scenario's temporary
        directory.
    :param manager: the id of the manager under test (default: the last pr-manager made).
    :param plugins: plugins that register the types: entry-point names (loaded as
        ``qompr-pr-helper --plugin`` loads them) or plugin objects (modules with
        ``@hookimpl`` functions).  No other plugin is loaded.
    :param target_ports: how many target ports the manager offers (RELATIVE TARGET PORT
        IDENTIFIERs 1..N); scenarios that need more do not apply.
    :param scenario_dirs: directories of more scenario files, run besides the packaged ones.
    :param mode: the expectations held to; the scenarios' ``lio`` (the default) or ``spc4``.
    """

    objects: tuple[str, ...] = attrs.field(converter=_strings)
    manager: str | None = None
    plugins: tuple[str | object, ...] = attrs.field(default=(), converter=_plugins)
    target_ports: int = 1
    scenario_dirs: tuple[Path, ...] = attrs.field(default=(), converter=_paths)
    mode: str = "lio"
    _pm: pluggy.PluginManager | None = attrs.field(default=None, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not self.objects:
            raise ConformanceSetupError("no object to test: give at least one -object string")
        if self.target_ports < 1:
            raise ConformanceSetupError(f"target ports must be 1 or more, not {self.target_ports}")

    # -- which scenarios ------------------------------------------------------------------

    def _classified(self) -> tuple[list[Scenario], list[Exclusion]]:
        scenarios = load_all(SCENARIO_DIR)
        for directory in self.scenario_dirs:
            scenarios += load_all(directory)
        applicable: list[Scenario] = []
        excluded: list[Exclusion] = []
        for scenario in scenarios:
            if self.mode not in scenario.modes:
                excluded.append(Exclusion(scenario, f"has no {self.mode} expectations"))
                continue
            others = scenario.opcodes(self.mode) - MANAGER_OPCODES
            if others:
                names = ", ".join(sorted(_opcode_name(op) for op in others))
                excluded.append(Exclusion(scenario, f"sends {names}, which no pr-manager carries"))
            elif scenario.ports > self.target_ports:
                excluded.append(Exclusion(scenario, f"needs {scenario.ports} target ports"))
            else:
                applicable.append(scenario)
        return applicable, excluded

    def scenarios(self) -> list[Scenario]:
        """The scenarios that apply to the manager, in file order."""
        return self._classified()[0]

    def exclusions(self) -> list[Exclusion]:
        """The scenarios that do not apply, each with its reason."""
        return self._classified()[1]

    # -- the objects under test -------------------------------------------------------------

    def _plugin_manager(self) -> pluggy.PluginManager:
        if self._pm is None:
            names = [p for p in self.plugins if isinstance(p, str)]
            try:
                pm = get_plugin_manager(load_entrypoints=bool(names), allow=names)
                for plugin in self.plugins:
                    if not isinstance(plugin, str) and not pm.is_registered(plugin):
                        pm.register(plugin)
            except (QomprError, ValueError) as exc:
                raise ConformanceSetupError(f"cannot load the plugins: {exc}") from exc
            self._pm = pm
        return self._pm

    def _create(self, tree: ObjectTree, tmp: str) -> PRManager:
        specs = [spec.replace("{tmp}", tmp) for spec in self.objects]
        try:
            made = process(tree, specs)
            if isinstance(made, HelpText):
                raise ConformanceSetupError(f"an -object string asked for help:\n{made}")
            if self.manager is not None:
                return pr_manager_lookup(tree, self.manager)
        except QomprError as exc:
            if isinstance(exc, ConformanceSetupError):
                raise
            where = f"{exc.location}: " if exc.location else ""
            raise ConformanceSetupError(
                f"cannot make the objects under test: {where}{exc.render()}"
            ) from exc
        managers = [obj for obj in made if isinstance(obj, PRManager)]
        if not managers:
            raise ConformanceSetupError("none of the -object strings makes a pr-manager")
        return managers[-1]

    @contextlib.contextmanager
    def target(self, scenario: Scenario) -> Iterator[ManagerTarget]:
        """A fresh manager and logical unit for *scenario*, as a
        :class:`~qompr.testing.ManagerTarget`; everything is deleted afterwards.

        :raises ConformanceSetupError: the objects cannot be made.
        """
        tree = new_tree(self._plugin_manager())
        with tempfile.TemporaryDirectory(prefix="qompr-conformance-") as tmp:
            try:
                manager = self._create(tree, tmp)
                lu = Path(tmp) / "lu.img"
                lu.write_bytes(bytes(_LU_SIZE))
                fd = os.open(lu, os.O_RDWR)
                try:
                    yield ManagerTarget(manager, fd, scenario.initiators, scenario.ports)
                finally:
                    os.close(fd)
            finally:
                for obj in reversed(tree.user_objects()):
                    obj.unparent()

    def check(self) -> str:
        """Make the objects once and delete them: the setup works.

        :returns: the manager under test's ``TYPE 'ID'``.
        :raises ConformanceSetupError: the objects cannot be made.
        """
        tree = new_tree(self._plugin_manager())
        with tempfile.TemporaryDirectory(prefix="qompr-conformance-") as tmp:
            try:
                manager = self._create(tree, tmp)
                return f"{manager.typename} '{manager.id}'"
            finally:
                for obj in reversed(tree.user_objects()):
                    obj.unparent()

    def run(self, scenario: Scenario) -> int:
        """Run *scenario* on a fresh manager; returns the number of steps run.

        :raises ScenarioStepError: at the first answer that differs from LIO's.
        :raises ConformanceSetupError: the objects cannot be made.
        """
        with self.target(scenario) as target:
            return run(scenario, target, self.mode)

    def describe(self) -> str:
        """One line for a report: what is tested and how many scenarios apply.

        :raises ConformanceSetupError: the objects cannot be made.
        """
        applicable, excluded = self._classified()
        return (
            f"qompr conformance ({self.mode}): {len(applicable)} scenarios apply to "
            f"{self.check()}; {len(excluded)} do not (commands no pr-manager carries, "
            f"more than {self.target_ports} target port(s))"
        )


def conformance_test(
    *objects: str,
    manager: str | None = None,
    plugins: Sequence[str | object] = (),
    target_ports: int = 1,
    scenario_dirs: Sequence[Path | str] = (),
) -> Callable[[Scenario], None]:
    """A pytest test function, parametrized over the applicable scenarios, that runs each
    against the manager: assign it to a ``test_...`` name of a test module.  The parameters
    are :class:`Conformance`'s."""
    conformance = Conformance(
        objects,
        manager=manager,
        plugins=plugins,
        target_ports=target_ports,
        scenario_dirs=scenario_dirs,
    )
    scenarios = conformance.scenarios()

    @pytest.mark.parametrize("scenario", scenarios, ids=[s.id for s in scenarios])
    def test(scenario: Scenario) -> None:
        conformance.run(scenario)

    return test


# -- the pytest plugin ---------------------------------------------------------------------

_CONFORMANCE = pytest.StashKey["Conformance | None"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qompr", "qompr conformance scenarios (qompr.testing.conformance)")
    group.addoption(
        "--qompr-object",
        action="append",
        default=[],
        metavar="OBJECT",
        help="an -object string to create for each scenario, in order ({tmp}: a fresh "
        "directory); giving one adds the conformance tests",
    )
    group.addoption(
        "--qompr-manager",
        metavar="ID",
        help="the id of the manager under test (default: the last pr-manager made)",
    )
    group.addoption(
        "--qompr-plugin",
        action="append",
        default=[],
        metavar="NAME",
        help="load this qompr entry-point plugin (repeatable); no other is loaded",
    )
    group.addoption(
        "--qompr-target-ports",
        type=int,
        default=1,
        metavar="N",
        help="how many target ports the manager offers (default 1)",
    )
    group.addoption(
        "--qompr-scenarios",
        action="append",
        default=[],
        metavar="DIR",
        help="also run the scenarios of DIR/*.toml (format: qompr.testing.scenario)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: a qompr conformance scenario (qompr.testing.conformance)"
    )
    objects: list[str] = config.getoption("qompr_object")
    if not objects:
        config.stash[_CONFORMANCE] = None
        return
    try:
        conformance = Conformance(
            objects,
            manager=config.getoption("qompr_manager"),
            plugins=config.getoption("qompr_plugin"),
            target_ports=config.getoption("qompr_target_ports"),
            scenario_dirs=config.getoption("qompr_scenarios"),
        )
        conformance.check()  # a wrong setup is one usage error, not a failure per scenario
    except (ConformanceSetupError, ScenarioFormatError) as exc:
        raise pytest.UsageError(f"qompr conformance: {exc}") from None
    config.stash[_CONFORMANCE] = conformance


def pytest_report_header(config: pytest.Config) -> str | None:
    conformance = config.stash.get(_CONFORMANCE, None)
    return conformance.describe() if conformance is not None else None


class ScenarioItem(pytest.Item):
    """One conformance scenario as a test."""

    def __init__(self, *, scenario: Scenario, conformance: Conformance, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.conformance = conformance
        self.add_marker(MARKER)

    @override
    def runtest(self) -> None:
        self.conformance.run(self.scenario)

    @override
    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str | Any:
        # The step and what differed say it all; the runner's traceback would not help.
        if isinstance(excinfo.value, ScenarioStepError | ConformanceSetupError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    @override
    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"scenario {self.scenario.id} ({self.scenario.file})"


@pytest.hookimpl(tryfirst=True)  # before -k and -m deselect
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    conformance = config.stash.get(_CONFORMANCE, None)
    if conformance is None:
        return
    for scenario in conformance.scenarios():
        items.append(
            ScenarioItem.from_parent(
                session,
                name=f"qompr-conformance[{scenario.id}]",
                nodeid=f"qompr-conformance::{scenario.id}",
                scenario=scenario,
                conformance=conformance,
            )
        )
