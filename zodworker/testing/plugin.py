"""The pytest plugin, registered as the ``zodworker`` entry point (``pytest11``).

It is off until a project turns it on, so installing zodworker changes nobody's test run:
``--zodworker`` on the command line, ``zodworker = true`` in the ``[pytest]`` ini section
(or ``[tool.pytest.ini_options]``), or ``-p zodworker.testing.fixtures`` /
``pytest_plugins = ["zodworker.testing.fixtures"]``, which loads the fixtures directly.
"""

from __future__ import annotations

from typing import Any

__all__ = ["pytest_addoption", "pytest_configure"]


def pytest_addoption(parser: Any) -> None:
    parser.addoption(
        "--zodworker",
        action="store_true",
        default=False,
        help="enable zodworker's fixtures (zodworker_db: a migrated schema per test)",
    )
    parser.addini("zodworker", "enable zodworker's fixtures (true/false)", type="bool")


def pytest_configure(config: Any) -> None:
    if config.getoption("zodworker") or config.getini("zodworker"):
        from . import fixtures

        if not config.pluginmanager.is_registered(fixtures):
            config.pluginmanager.register(fixtures, "zodworker-fixtures")
