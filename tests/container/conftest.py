"""tests/container: the image on a real engine. Run by `make test-container`, never by `make test`.

`tools/container-engine.sh up` (and `postgres`) must have run: it starts dockerd and provides the
base images. The image is built once per session, as users build it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.container.engine import IMAGE, ROOT, docker, run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:  # builds and engine start-up take longer than the suite's 120 s default
        item.add_marker(pytest.mark.timeout(600))


@pytest.fixture(scope="session")
def engine() -> str:
    info = run("docker", "info", "--format", "{{.ServerVersion}}", check=False)
    if info.returncode != 0:
        pytest.fail("no container engine answers: run `make test-container` (tools/container-engine.sh up)")
    return info.stdout.strip()


@pytest.fixture(scope="session")
def image(engine: str) -> Iterator[str]:
    """``docker build --network=host``: pip inside the build needs the host's network here."""
    started = time.monotonic()
    docker("build", "--network=host", "-t", IMAGE, str(ROOT), timeout=900)
    print(f"\nengine {engine}: image {IMAGE} built in {time.monotonic() - started:.1f} s")
    yield IMAGE
    # Each rebuild leaves the previous image untagged: drop those, keep the tagged ones (the cache).
    docker("image", "prune", "-f", check=False)
