"""`teamhub export z2jh`: a populated teamhub → chart values that the chart's schema accepts,
build contexts and a migration guide; refusals leave nothing behind."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from support.z2jh import populated

from teamhub import cli as cli_module
from teamhub.export import chart
from teamhub.export.bundle import LossError, export_z2jh
from teamhub.export.values import Options, home_volume, quantity

OPTS = Options(machine_memory=32 << 30, machine_cpus=8)


def run(*args: str):
    return CliRunner().invoke(cli_module.cli, list(args))


@pytest.fixture
def install(tmp_path: Path):
    return populated(tmp_path / "install")


def test_values_validate_against_the_charts_schema(install, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = export_z2jh(install, out, OPTS)
    assert result.losses == []
    values = yaml.safe_load((out / "values.yaml").read_text())
    # Independently of the export's own check: Helm's merge over the chart's defaults,
    # then the chart's schema, from the copies shipped in the package.
    merged = chart.helm_merge(yaml.safe_load((chart.CHART_DIR / "values.yaml").read_text()),
                              values)
    jsonschema.validate(merged, yaml.safe_load(
        (chart.CHART_DIR / "values.schema.yaml").read_text()))
    hub, su, team = values["hub"], values["singleuser"], values["custom"]["teamhub"]
    assert hub["db"] == {"type": "sqlite-pvc"}
    assert hub["config"]["JupyterHub"]["authenticator_class"].endswith("TeamhubAuthenticator")
    assert hub["config"]["TeamhubAuthenticator"]["signup_enabled"] is True
    assert hub["config"]["TeamhubAuthenticator"]["min_password_length"] == 12
    assert hub["config"]["GuardedAuthenticator"]["lockout_failures"] == 7
    assert hub["config"]["JupyterHub"]["subdomain_host"] == "https://hub.example.org"
    assert su["defaultUrl"] == "/lab" and su["cpu"] == {"limit": 2.0, "guarantee": 0.5}
    assert su["memory"] == {"limit": "4G", "guarantee": "1G"}
    assert values["cull"] == {"enabled": True, "timeout": 7200, "every": 300}
    assert values["proxy"]["https"]["type"] == "manual"
    assert "BEGIN PRIVATE KEY" in values["proxy"]["https"]["manual"]["key"]
    assert team["limits"]["groups"] == {"data": {"memory": "16G", "cpu": "4"}}
    assert team["gpus"]["groups"] == {"ml": 2}
    assert sorted(team["users"]) == ["ada", "bob", "cy", "dee", "eve"]
    assert len({u["uid"] for u in team["users"].values()}) == 5
    assert su["storage"]["extraVolumeMounts"]["teamhub-envs"]["readOnly"] is True
    assert "jupyter-ada:x:" in su["extraFiles"]["teamhub-passwd"]["stringData"]
    # values.yaml holds the TLS key: owner only, in a folder that is owner only.
    assert stat.S_IMODE((out / "values.yaml").stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    summary = json.loads((out / "export.json").read_text())
    assert (summary["users"], summary["groups"], summary["projects"], summary["envs"]) == \
        (5, 2, 2, 2)


def test_build_contexts_and_guide(install, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export_z2jh(install, out, Options(registry="registry.example.org/team", guarantee=0.5))
    hub = (out / "images" / "Dockerfile.hub").read_text()
    assert f"FROM {chart.HUB_BASE_IMAGE}" in hub and "jupyterhub==" in hub
    single = (out / "images" / "Dockerfile.singleuser").read_text()
    assert "libnss-extrausers" in single and "/opt/teamhub/runtime" in single
    assert (out / "images" / "teamhub-src" / "src" / "teamhub" / "k8s.py").is_file()
    assert "jupyterhub==" in (out / "images" / "runtime-requirements.txt").read_text()
    guide = (out / "MIGRATION.md").read_text()
    assert "docker push registry.example.org/team/hub:" in guide
    assert "systemd limits become pod limits" in guide and "0.5 × the limit" in guide
    assert "`home-ada`" in guide and "teamhub-projects" in guide
    claims = list(yaml.safe_load_all((out / "storage.yaml").read_text()))
    names = {c["metadata"]["name"]: c["spec"]["accessModes"] for c in claims}
    assert names["teamhub-projects"] == ["ReadWriteMany"] and names["home-bob"] == \
        ["ReadWriteOnce"]


def test_existing_folder_is_refused_untouched(install, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run("--config", str(install.config_file), "export", "z2jh", "--out", str(out))
    assert result.exit_code == 10
    assert "already exists" in result.output and len(result.output.strip().splitlines()) == 1
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["install", "out"]


def test_inexpressible_settings_need_allow_loss(tmp_path: Path) -> None:
    install = populated(tmp_path / "install", limits={"tasks": 4096},
                        auth={"trusted_proxies": []}, spawner={"env_keep": ["HTTPS_PROXY"]})
    out = tmp_path / "out"
    args = ("--config", str(install.config_file), "export", "z2jh", "--out", str(out))
    # The CLI loads the settings itself: the GPU values of the fixture are not in this
    # branch's schema, so the GPU loss is checked through the function below.
    result = run(*args)
    assert result.exit_code == 10, result.output
    lines = result.output.strip().splitlines()
    assert [line for line in lines if line.startswith("teamhub: cannot express: ")] == [
        lines[0], lines[1]]
    assert "spawner.env_keep" in lines[0] and "limits.tasks = 4096" in lines[1]
    assert "--allow-loss" in lines[2] and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["install"]
    install.values["gpus.default"] = "all"
    with pytest.raises(LossError) as refused:
        export_z2jh(install, out, OPTS)
    assert any(line.startswith("gpus.default = all") for line in refused.value.losses)
    result = export_z2jh(install, out, OPTS, allow_loss=True)
    assert len(result.losses) == 3
    assert "limits.tasks = 4096" in (out / "MIGRATION.md").read_text()


def test_shares_of_this_machine_become_absolute(tmp_path: Path) -> None:
    install = populated(tmp_path / "install", limits={"memory": "50%", "cpu": "25%"})
    result = export_z2jh(install, tmp_path / "out", OPTS)
    assert result.notes == ["limits.memory = 50% is a share of this machine: exported as 16G",
                            "limits.cpu = 25% is a share of this machine: exported as 2"]


def test_limits_off_remove_the_charts_default_guarantee(tmp_path: Path) -> None:
    install = populated(tmp_path / "install", limits={"enabled": False})
    export_z2jh(install, tmp_path / "out", OPTS)
    values = yaml.safe_load((tmp_path / "out" / "values.yaml").read_text())
    merged = chart.helm_merge(chart.defaults(), values)
    assert merged["singleuser"]["memory"] == {} and merged["singleuser"]["cpu"] == {}
    assert values["custom"]["teamhub"]["limits"] is None


def test_helm_merge_rules() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": "x", "e": {"f": 1}}
    assert chart.helm_merge(base, {"a": {"c": [3]}, "d": None, "e": {"g": 2}}) == \
        {"a": {"b": 1, "c": [3]}, "e": {"f": 1, "g": 2}}
    assert chart.problems({"hub": {"nonsense": 1}})[0].startswith("hub: Additional properties")


def test_names_and_quantities() -> None:
    assert home_volume("ada") == "home-ada"
    assert home_volume("a_b").startswith("home-a-b-") and home_volume("a_b") != "home-a-b"
    assert (quantity(2 << 30), quantity(512 << 20), quantity(1000)) == ("2Gi", "512Mi", "1000")


def test_docker_backend_image_is_the_single_user_base(tmp_path: Path) -> None:
    install = populated(tmp_path / "install", spawner={"backend": "docker"},
                        docker={"image": "base"})
    export_z2jh(install, tmp_path / "out", OPTS)
    single = (tmp_path / "out" / "images" / "Dockerfile.singleuser").read_text()
    assert "\nFROM teamhub/base:latest\n" in single


def test_unreadable_certificate_is_one_line_and_nothing_written(tmp_path: Path) -> None:
    install = populated(tmp_path / "install", tls={"cert": str(tmp_path / "gone.crt")})
    result = run("--config", str(install.config_file), "export", "z2jh", "--out",
                 str(tmp_path / "out"))
    assert result.exit_code == 10
    assert result.output.startswith("teamhub: error: cannot read tls.cert = ")
    assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["install"]


def test_json_summary(install, tmp_path: Path) -> None:
    result = run("--config", str(install.config_file), "export", "z2jh", "--json", "--out",
                 str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["out"] == str(tmp_path / "out") and summary["projects"] == 2
    assert summary["chart_version"] == chart.CHART_VERSION
