"""`docker.images`: the setting, who may run which image, and the spawn form's checks.

The spawner's hooks run here on a DockerSpawner with a stand-in hub user (a name and
groups: all the hooks read); the hub test module drives the same hooks through a real
hub's form and REST API.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from tornado import web
from traitlets.config import Config

from teamhub import hubconfig, image_choice
from teamhub.errors import ImageError, SettingsError
from teamhub.image_choice import ImageOption
from teamhub.paths import Paths
from teamhub.settings import load
from teamhub.spawners.docker import DockerSpawner

TABLE = {"ml": {"display": "Python with PyTorch", "groups": ["ml"]},
         "myorg/lab:3": {"display": "Lab 3"},
         "base": {"display": "Plain Python", "groups": ["nobody-at-all"]}}


def settings(tmp_path: Path, text: str = "", **env: str):
    cfg = tmp_path / "teamhub.toml"
    cfg.write_text(text)
    return load(cfg, environ=env)


def test_images_table_from_toml_reaches_the_spawner(tmp_path):
    s = settings(tmp_path, '[spawner]\nbackend = "docker"\n'
                 '[docker.images.ml]\ndisplay = "Python with PyTorch"\ngroups = ["ml"]\n'
                 '[docker.images."myorg/lab:3"]\n')
    assert s["docker.images"] == {"ml": {"display": "Python with PyTorch", "groups": ["ml"]},
                                  "myorg/lab:3": {}}
    c = Config()
    hubconfig.update_docker(c, s, Paths.from_settings(s))
    assert c.DockerSpawner.allowed_images == s["docker.images"]
    assert c.DockerSpawner.image == "base"


def test_images_table_from_the_environment_is_json(tmp_path):
    s = settings(tmp_path, TEAMHUB_DOCKER_IMAGES='{"ml": {"groups": ["ml", "gpu"]}}')
    assert s["docker.images"] == {"ml": {"groups": ["ml", "gpu"]}}
    assert settings(tmp_path)["docker.images"] == {}


@pytest.mark.parametrize(("toml", "says"), [
    ('[docker.images.ml]\ncolour = "red"\n', "display and groups"),
    ('[docker.images.ml]\ngroups = "ml"\n', "list of group names"),
    ('[docker.images.ml]\ngroups = ["Not A Group"]\n', "list of group names"),
    ('[docker.images.ml]\ndisplay = ""\n', "non-empty"),
    ('[docker.images."Bad Name"]\n', "image names"),
    ('[docker]\nimages = "ml"\n', "table of tables"),
])
def test_bad_images_tables_are_refused_naming_the_problem(tmp_path, toml, says):
    with pytest.raises(SettingsError, match="docker.images") as info:
        settings(tmp_path, toml)
    assert says in str(info.value)


def test_limits_groups_still_refuse_lists(tmp_path):
    """The tables-of-tables rule now lets lists through to each setting's own check."""
    with pytest.raises(SettingsError, match="limits.groups"):
        settings(tmp_path, '[limits.groups.ml]\nmemory = ["1G"]\n')


def test_who_may_run_which_image():
    names = [o.name for o in image_choice.allowed("base", TABLE, ["ml"])]
    # The default first, for everyone (its own groups do not apply), then the table's order.
    assert names == ["base", "ml", "myorg/lab:3"]
    assert [o.name for o in image_choice.allowed("base", TABLE, [])] == ["base", "myorg/lab:3"]
    assert image_choice.allowed("base", TABLE, [])[0].display == "Plain Python"
    assert image_choice.allowed("other", {}, []) == [ImageOption("other", "other")]


@pytest.mark.parametrize("value", [
    "ml", "../base", "base ", 5, ["base", "ml"], {"name": "base"}, True])
def test_anything_but_an_allowed_name_is_refused_naming_the_allowed(value):
    options = image_choice.allowed("base", TABLE, [])
    with pytest.raises(ImageError, match="not allowed; choose one of: base, myorg/lab:3"):
        image_choice.choose({"image": value}, options)


def test_no_choice_is_the_default_and_a_form_list_of_one_is_its_value():
    options = image_choice.allowed("base", TABLE, ["ml"])
    assert image_choice.choose({}, options) == "base"
    assert image_choice.choose({"image": ""}, options) == "base"
    assert image_choice.choose({"image": ["ml"]}, options) == "ml"
    with pytest.raises(ImageError, match="object"):
        image_choice.choose(["ml"], options)


def test_form_offers_a_choice_only_when_there_is_one_and_escapes_names():
    assert image_choice.form_html([ImageOption("base", "base")]) == ""
    html = image_choice.form_html([ImageOption("base", "Base"),
                                   ImageOption("x", "<script>alert(1)</script>")], "x")
    assert 'name="image"' in html and "<script>" not in html and "&lt;script&gt;" in html
    assert '<option value="x" selected>' in html
    assert image_choice.from_form({"image": ["x"]}) == {"image": "x"}
    assert image_choice.from_form({"other": ["y"]}) == {}


def spawner(groups: list[str], stored: dict | None = None) -> DockerSpawner:
    user = SimpleNamespace(name="ada", groups=[SimpleNamespace(name=g) for g in groups])
    orm = SimpleNamespace(user_options=stored, server=None, name="")
    return DockerSpawner(user=user, orm_spawner=orm, image="base", allowed_images=TABLE)


def test_spawner_offers_the_users_images_and_preselects_the_last_choice():
    form = asyncio.run(spawner(["ml"], {"image": "ml"}).get_options_form())
    assert '<option value="ml" selected>Python with PyTorch</option>' in form
    assert "Lab 3" in form and "Plain Python" in form
    # Nothing to choose: no form, the server starts at once.
    only = DockerSpawner(user=SimpleNamespace(name="bo", groups=[]),
                         orm_spawner=SimpleNamespace(user_options=None, server=None),
                         image="base")
    assert asyncio.run(only.get_options_form()) == ""


def test_spawner_applies_a_choice_and_falls_back_to_the_default():
    s = spawner(["ml"])
    asyncio.run(s._run_apply_user_options({"image": "ml"}))
    assert s.image == "ml"
    asyncio.run(s._run_apply_user_options({}))
    assert s.image == "base"
    assert s.run_options_from_form({"image": ["myorg/lab:3"]}) == {"image": "myorg/lab:3"}


@pytest.mark.parametrize("how", ["api", "form"])
def test_spawner_refuses_a_tampered_choice_with_400_logs_it_and_forgets_it(how, caplog):
    s = spawner([], {"image": "ml"})
    s.log = logging.getLogger("test-image-choice")
    with caplog.at_level(logging.WARNING, "test-image-choice"), \
            pytest.raises(web.HTTPError) as info:
        if how == "api":
            asyncio.run(s._run_apply_user_options({"image": "ml"}))
        else:
            s.run_options_from_form({"image": ["ml"]})
    assert info.value.status_code == 400
    assert "choose one of: base, myorg/lab:3" in info.value.jupyterhub_message
    assert "Refused a server start for ada" in caplog.text and "'ml'" in caplog.text
    assert s.image == "base"
    # JupyterHub saved the API's options before the check: they go. A form is checked
    # before anything is saved: the last saved choice stays.
    assert s.orm_spawner.user_options == ({} if how == "api" else {"image": "ml"})


@pytest.mark.parametrize("name", ["ada@corp", "a b", "café"])
def test_a_user_name_docker_cannot_name_a_container_after_fails_before_anything(name):
    """Only a raw authenticator from jupyterhub_config.d lets such a name in; the start
    stops at the first hook, before any account, volume or container is made."""
    s = DockerSpawner(user=SimpleNamespace(name=name, groups=[]),
                      orm_spawner=SimpleNamespace(user_options=None, server=None, name=""),
                      image="base")
    with pytest.raises(web.HTTPError) as info:
        asyncio.run(s._run_apply_user_options({}))
    assert "Docker cannot name a container" in info.value.jupyterhub_message
    assert "lower-case letters" in info.value.jupyterhub_message


def test_every_hub_user_name_is_a_valid_container_name():
    from teamhub.system.containers import container_name_problem
    from teamhub.system.names import LINUX_NAME_RE

    assert LINUX_NAME_RE.pattern.startswith("[a-z_]")  # the widest names teamhub accepts
    for name in ("ada", "_svc", "a-b_c9", "x" * 32):
        assert container_name_problem(f"teamhub-{name}") is None


def test_entries_that_are_not_local_images_are_named_with_their_fix():
    """What `teamhub up` and `doctor` say; the engine is a stand-in that knows one image."""
    from teamhub import images

    class OneImage:
        def image(self, ref: str) -> dict | None:
            return {"Id": "sha256:1"} if ref == "teamhub/ml:latest" else None

    assert images.missing_allowed({"ml": {}}, OneImage()) is None
    line = images.missing_allowed({"ml": {}, "gpu": {}, "myorg/lab:3": {}}, OneImage())
    assert "teamhub/gpu:latest (build it with `teamhub image build gpu`)" in line
    assert "myorg/lab:3 (load or build it on this machine" in line
    assert "teamhub/ml" not in line and "\n" not in line
