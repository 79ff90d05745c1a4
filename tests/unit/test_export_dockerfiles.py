"""The Dockerfiles in deploy/docker, checked without a Docker engine: what they copy and run is in the repository,
and the images the exports name are the ones they make."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from alert_sidecar import __version__
from alert_sidecar.pipeline.export import images

ROOT = Path(__file__).resolve().parents[2]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments left out."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in (raw.strip() for raw in text.splitlines()) if line and not line.startswith("#")]


def copies(path: Path) -> dict[str, str]:
    """Each COPY from the build context: repository path -> where it lands (COPY --from=... left out)."""
    result = {}
    for instruction, arguments in instructions(path):
        if instruction == "COPY" and not arguments.startswith("--from"):
            *sources, target = shlex.split(arguments)
            for source in sources:
                result[source] = target
    return result


@pytest.mark.parametrize("name", sorted(images.DOCKERFILES))
def test_every_copy_source_is_in_the_repository(name):
    dockerfile = ROOT / images.DOCKERFILES[name]
    found = copies(dockerfile)
    assert found
    for source in found:
        assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source}: not in the repository"
        assert not re.search(r"(^|/)(\.venv|target|\.git)(/|$)", source)


@pytest.mark.parametrize("name", sorted(images.DOCKERFILES))
def test_its_comment_builds_the_image_the_exports_name(name):
    dockerfile = ROOT / images.DOCKERFILES[name]
    text = dockerfile.read_text()
    expected = images.image(name)
    assert f"docker build -f {images.DOCKERFILES[name]} -t {expected} ." in text
    for instruction, arguments in instructions(dockerfile):
        if instruction == "ARG" and arguments.startswith("SIDECAR_IMAGE="):
            assert arguments == f"SIDECAR_IMAGE={images.image(images.SIDECAR)}"


@pytest.mark.parametrize("name", sorted(images.DOCKERFILES))
def test_what_the_run_lines_install_is_copied_in_first(name):
    """A path below /src that a RUN line names came in by a COPY, and is what its installer reads."""
    dockerfile = ROOT / images.DOCKERFILES[name]
    landed = {target.rstrip("/"): source for source, target in copies(dockerfile).items()}
    for instruction, arguments in instructions(dockerfile):
        if instruction != "RUN":
            continue
        for path in re.findall(r"(/src/[\w./-]+)", arguments):
            source = next((src + path[len(target):] for target, src in landed.items()
                           if path == target or path.startswith(target + "/")), None)
            if source is None and path.startswith("/src/"):  # WORKDIR /src with paths relative to it
                source = path[len("/src/"):]
            assert source is not None and (ROOT / source).exists(), f"{dockerfile.name}: RUN reads {path}"
        for pom in re.findall(r"-f (\S+pom\.xml)", arguments):
            assert (ROOT / pom).is_file(), f"{dockerfile.name}: mvn -f {pom}"
    if "pip install" in dockerfile.read_text():
        assert (ROOT / "sdks/python/pyproject.toml").is_file() and (ROOT / "pyproject.toml").is_file()


def test_the_r_image_installs_the_packages_r_mk_installs():
    makefile = (ROOT / "sdks/r/r.mk").read_text()
    wanted = set(re.search(r"^R_PACKAGES := (.*)$", makefile, re.M).group(1).split())
    text = (ROOT / images.DOCKERFILES["alert-worker-r"]).read_text()
    installed = set(re.findall(r"\b(r-base-core|r-cran-[a-z0-9]+)\b", text))
    # testthat and roxygen2 are for the package's tests and docs, not for running a worker.
    assert installed == wanted - {"r-cran-testthat", "r-cran-roxygen2"}
    assert (ROOT / "sdks/r/DESCRIPTION").is_file()


def test_the_exported_images_are_these():
    assert images.image(images.SIDECAR) == f"alert-sidecar:{__version__}"
    for language in images.LANGUAGES:
        assert images.worker_image_name(language) in images.DOCKERFILES
    assert {path for path in (ROOT / "deploy/docker").glob("*.Dockerfile")} == {
        ROOT / path for path in images.DOCKERFILES.values()}
