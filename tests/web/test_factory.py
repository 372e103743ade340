"""The app factory: configuration layers, the secret key, import hygiene."""

from __future__ import annotations

import secrets
import subprocess
import sys

import pytest

from chatapp import create_app


@pytest.fixture
def instance(tmp_path, monkeypatch):
    monkeypatch.setenv("CHATAPP_INSTANCE_PATH", str(tmp_path))
    for name in ("CHATAPP_SECRET_KEY", "CHATAPP_STORE", "CHATAPP_ALLOWED_ORIGINS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_testing_config():
    app = create_app("config.TestingConfig")
    assert app.testing and app.config["SECRET_KEY"] == "test"


def test_production_defaults(instance):
    app = create_app()
    assert not app.debug and not app.testing
    assert app.config["ROOM_CODE_LENGTH"] == 4 and app.config["SEND_RATE"] == 5
    assert app.config["STORE"] == "memory"


def test_secret_key_generated_once_into_instance_folder(instance):
    first = create_app().config["SECRET_KEY"]
    assert len(first) == 64
    key_file = instance / "secret_key"
    assert key_file.read_text().strip() == first
    assert key_file.stat().st_mode & 0o077 == 0  # readable by the owner only
    assert create_app().config["SECRET_KEY"] == first


def test_processes_starting_together_share_one_whole_key(instance, monkeypatch):
    real = secrets.token_hex
    second = []

    def token_hex(nbytes):  # the first process is held up while it writes its key
        monkeypatch.setattr(secrets, "token_hex", real)
        second.append(create_app().config["SECRET_KEY"])  # and a second one starts
        return real(nbytes)

    monkeypatch.setattr(secrets, "token_hex", token_hex)
    first = create_app().config["SECRET_KEY"]
    assert second == [first] and len(first) == 64
    assert [p.name for p in instance.iterdir()] == ["secret_key"]  # no draft left


def test_secret_key_from_environment(instance, monkeypatch):
    monkeypatch.setenv("CHATAPP_SECRET_KEY", "from-the-environment")
    assert create_app().config["SECRET_KEY"] == "from-the-environment"
    assert not (instance / "secret_key").exists()


def test_instance_config_then_environment(instance, monkeypatch):
    (instance / "config.py").write_text("SEND_RATE = 7\nROOM_MAX_MEMBERS = 9\n")
    monkeypatch.setenv("CHATAPP_ROOM_MAX_MEMBERS", "12")
    monkeypatch.setenv("CHATAPP_ALLOWED_ORIGINS", "https://a.example, https://b.example")
    app = create_app()
    assert app.config["SEND_RATE"] == 7
    assert app.config["ROOM_MAX_MEMBERS"] == 12
    assert app.config["ALLOWED_ORIGINS"] == ["https://a.example", "https://b.example"]
    assert app.extensions["room_registry"].store.limits.max_members == 12


def test_unknown_store_is_refused(instance, monkeypatch):
    monkeypatch.setenv("CHATAPP_STORE", "postgres://nowhere")
    with pytest.raises(ValueError, match="unknown STORE"):
        create_app()


def test_importing_the_package_imports_no_third_party_code():
    # python -m chatapp imports the package before __main__ patches gevent.
    watched = "{'flask', 'ssl', 'engineio', 'gevent'}"
    probe = f"import sys, chatapp; print(sorted({watched} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_main_help_lists_options():
    out = subprocess.run(
        [sys.executable, "-m", "chatapp", "--help"], capture_output=True, text=True, check=True
    )
    assert "--host" in out.stdout and "--port" in out.stdout
    assert "MonkeyPatchWarning" not in out.stderr
