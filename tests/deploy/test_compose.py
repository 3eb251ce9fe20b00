"""deploy/compose.yaml, checked without a container engine: it parses, every MLRAG_* variable
it sets is a real setting, the service names match the URLs the API is given, the inference
servers sit behind one name under the gpu / cpu profiles, and the mlrag image builds from the
repository's Dockerfile."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from rag.config import Settings

yaml = pytest.importorskip("yaml")

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(:?-[^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def setting_env_names() -> set[str]:
    """Every environment name Settings reads: MLRAG_<FIELD> and the declared aliases."""
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        names.add(f"MLRAG_{name.upper()}")
        alias = field.validation_alias
        if alias is not None:
            choices = getattr(alias, "choices", [alias])
            names.update(str(c).upper() for c in choices)
    return names


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def listens_on(service: dict[str, Any]) -> str:
    """The port a service's command line binds (``--port N``)."""
    command = [str(part) for part in service.get("command", [])]
    return command[command.index("--port") + 1]


def names_of(compose: dict[str, Any], service: str) -> set[str]:
    """The names a service answers to on the default network: its own and its aliases."""
    networks = compose["services"][service].get("networks") or {}
    aliases = (
        set((networks.get("default") or {}).get("aliases", []))
        if isinstance(networks, dict)
        else set()
    )
    return {service, *aliases}


def test_every_mlrag_variable_is_a_setting(compose: dict[str, Any]) -> None:
    known = setting_env_names()
    used = {
        key
        for service in compose["services"].values()
        for key in environment(service)
        if key.startswith("MLRAG_")
    }
    assert {"MLRAG_CHROMA_URL", "MLRAG_OPENAI_BASE_URL", "MLRAG_GENERATOR"} <= used
    assert used - known == set()


def test_the_api_gets_a_valid_configuration(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(compose["services"]["api"])
    for key, value in env.items():
        # Compose substitutes ${VAR:-default} with the default when VAR is unset.
        monkeypatch.setenv(key, VARIABLE.sub(lambda m: (m.group(2) or ":-")[2:], value))
    settings = Settings()
    assert settings.chroma_url == "http://chroma:8000"
    assert settings.openai_base_url == "http://llm:8080/v1"
    assert settings.generator == "openai"
    assert settings.host == "0.0.0.0"


def test_service_names_match_the_urls(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = environment(services["api"])
    chroma = urlsplit(env["MLRAG_CHROMA_URL"])
    assert chroma.hostname in names_of(compose, "chroma")
    assert str(chroma.port) == listens_on(services["chroma"])
    llm = urlsplit(env["MLRAG_OPENAI_BASE_URL"])
    assert llm.path == "/v1"
    for name in ("llm-gpu", "llm-cpu"):
        assert llm.hostname in names_of(compose, name), name
        assert str(llm.port) == listens_on(services[name]), name


def test_inference_servers_are_profiles_and_the_gpu_one_reserves_a_gpu(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert services["llm-gpu"]["profiles"] == ["gpu"]
    assert services["llm-cpu"]["profiles"] == ["cpu"]
    (device,) = services["llm-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    command = services["llm-gpu"]["command"]
    assert "--enable-lora" in command and "--lora-modules" in command
    for name in ("chroma", "api", "llm-gpu", "llm-cpu"):
        assert "healthcheck" in services[name], name
    # The API must not need a profile that is off: both dependencies are optional.
    depends = services["api"]["depends_on"]
    assert depends["llm-gpu"]["required"] is False and depends["llm-cpu"]["required"] is False


def test_api_replicas_and_one_ingest_job(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert str(services["api"]["deploy"]["replicas"]).startswith("${MLRAG_REPLICAS")
    assert "ingest" not in " ".join(services["api"]["command"])  # replicas never ingest
    assert "mlrag ingest" in " ".join(services["ingest"]["command"])
    assert services["api"]["depends_on"]["ingest"]["condition"] == "service_completed_successfully"
    assert set(compose["volumes"]) >= {"chroma-data", "mlrag-data"}


def test_the_mlrag_image_builds_from_the_repository_dockerfile(compose: dict[str, Any]) -> None:
    for name in ("api", "ingest"):
        build = compose["services"][name]["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert context == REPO_ROOT
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file()
        text = dockerfile.read_text()
        assert "requirements" in text and "make install" in text  # the lock `make run` uses
        for arg in build.get("args", {}):
            assert re.search(rf"^ARG {arg}\b", text, re.M), f"Dockerfile has no ARG {arg}"


def test_every_variable_without_a_default_is_in_the_env_example(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    example = {
        line.split("=", 1)[0]
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line and not line.startswith("#") and "=" in line
    }
    for match in VARIABLE.finditer(text):
        name, default = match.group(1), match.group(2)
        assert default or name in example, f"${{{name}}} has no default and is not in .env.example"
    referenced = {m.group(1) for m in VARIABLE.finditer(text)}
    assert example - referenced == set(), "the .env example sets variables compose never reads"
