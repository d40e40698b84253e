"""Global options before or after the command, --password-command, profiles in the config
file (command line > environment > profile), and flags' help without ``<bool>``."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from strongroom.cli.main import main
from strongroom.storage import LocalBackend
from strongroom.vault import Vault
from tests.conftest import FAST_KDF

PW = "global options passphrase"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "STRONGROOM_PASSWORD",
        "STRONGROOM_PASSWORD_FILE",
        "STRONGROOM_PASSWORD_COMMAND",
        "STRONGROOM_VAULT",
        "STRONGROOM_PROFILE",
        "STRONGROOM_TOKEN",
        "STRONGROOM_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    loc = tmp_path / "vault"
    Vault.init(LocalBackend(loc), PW, kdf=FAST_KDF)
    return loc


@pytest.fixture
def pw_file(tmp_path: Path) -> Path:
    path = tmp_path / "pw"
    path.write_text(PW + "\n")
    return path


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config" / "strongroom" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def echo_command(text: str) -> str:
    code = f"print({text!r}); print('second line')"
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def test_init_and_points_with_the_vault_before_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRONGROOM_PASSWORD", PW)
    loc = str(tmp_path / "v")
    code, _, err = run(capsys, "--vault", loc, "init", "--kdf-memory", "1", "--kdf-time", "1")
    assert code == 0, err
    for args in (["-r", loc, "--json", "points"], [f"--vault={loc}", "points", "--json"]):
        code, out, err = run(capsys, *args)
        assert code == 0 and json.loads(out) == [], err


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize(
    "option", ["--vault", "-r", "--password-file", "--password-command", "--json", "--profile"]
)
def test_every_global_option_before_or_after_the_command(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    vault: Path,
    pw_file: Path,
    option: str,
    where: str,
) -> None:
    """Each option alone carries what the command needs; the rest comes from elsewhere."""
    values = {
        "--vault": str(vault),
        "-r": str(vault),
        "--password-file": str(pw_file),
        "--password-command": echo_command(PW),
        "--profile": "work",
    }
    write_config(tmp_path, f'[profiles.work]\nvault = "{vault}"\npassword_file = "{pw_file}"\n')
    given = [option] if option == "--json" else [option, values[option]]
    if option in ("--vault", "-r", "--json"):
        monkeypatch.setenv("STRONGROOM_PASSWORD", PW)
    if option not in ("--vault", "-r", "--profile"):
        monkeypatch.setenv("STRONGROOM_VAULT", str(vault))
    args = [*given, "points"] if where == "before" else ["points", *given]
    if option != "--json":
        args.append("--json")
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert json.loads(out) == []


@pytest.mark.parametrize("where", ["before", "after"])
def test_token_file_before_or_after_the_command_reaches_the_server_client(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The command line's token file wins over STRONGROOM_TOKEN (it is read, so a missing
    file is the error), and the environment is as before afterwards."""
    monkeypatch.setenv("STRONGROOM_TOKEN", "from-env")
    monkeypatch.setenv("STRONGROOM_PASSWORD", PW)
    missing = str(tmp_path / "no-token")
    given = ["--token-file", missing, "--vault", "https://127.0.0.1:9/v"]
    args = [*given, "points"] if where == "before" else ["points", *given]
    code, _, err = run(capsys, *args)
    assert code == 1 and f"cannot read token file {missing}" in err
    assert err.count("\n") == 1
    import os

    assert os.environ["STRONGROOM_TOKEN"] == "from-env"
    assert "STRONGROOM_TOKEN_FILE" not in os.environ


@pytest.mark.parametrize(
    "args",
    [["--bogus", "points"], ["-x", "points"], ["--vault"], ["--no-lock", "points"]],
)
def test_an_unknown_option_before_the_command_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    code, _, err = run(capsys, *args)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1


def test_a_global_option_the_command_does_not_take_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "-r", "/tmp", "version")
    assert code == 2 and err == "error: no such option: -r; see 'strongroom version --help'\n"


@pytest.mark.parametrize(
    ("args", "says", "command"),
    [
        (["restore", "files"], "missing argument 'point'", "restore files"),
        (["restore", "files", "latest", "--to", "x"], "no such option: --to", "restore files"),
        (["restore", "files", "latest", "--processes", "99"], "invalid value for '--processes'",
         "restore files"),
        (["backup", "files", "/tmp", "--excude", "*.o"], "no such option: --excude",
         "backup files"),
        (["points", "--kind"], "option '--kind' requires an argument", None),  # click: no context
    ],
)  # fmt: skip
def test_a_bad_command_line_is_one_line_with_the_commands_help(
    capsys: pytest.CaptureFixture[str], args: list[str], says: str, command: str | None
) -> None:
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith(f"error: {says}") and err.count("\n") == 1
    if command is not None:
        assert err.endswith(f"; see 'strongroom {command} --help'\n")


def test_a_group_without_its_command_shows_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "backup")
    assert code == 2
    assert "Usage: strongroom backup" in out + err and "files" in out + err


def test_options_before_a_group_land_after_the_subcommand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], vault: Path, pw_file: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("alpha")
    common = ["-r", str(vault), "--password-file", str(pw_file), "--json"]
    code, out, err = run(capsys, *common, "backup", "files", str(src))
    assert code == 0, err
    assert json.loads(out)["point"]
    code, out, err = run(capsys, *common, "key", "list")
    assert code == 0 and len(json.loads(out)) == 1, err


# --- passphrases ------------------------------------------------------------------------


def test_password_command_takes_the_first_line(
    capsys: pytest.CaptureFixture[str], vault: Path
) -> None:
    code, out, err = run(
        capsys, "points", "-r", str(vault), "--password-command", echo_command(PW), "--json"
    )
    assert code == 0 and json.loads(out) == [], err


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("false", "password command 'false' failed (exit 1)"),
        ("/no/such/program", "password command '/no/such/program' cannot run"),
        ("true", "password command 'true' printed no passphrase"),
        ("'unclosed", 'password command "\'unclosed": No closing quotation'),
    ],
)
def test_a_failing_password_command_is_one_line(
    capsys: pytest.CaptureFixture[str], vault: Path, command: str, message: str
) -> None:
    code, _, err = run(capsys, "points", "-r", str(vault), "--password-command", command)
    assert code == 1
    assert err.startswith(f"error: {message}") and err.count("\n") == 1


def test_password_file_and_command_together_are_refused(
    capsys: pytest.CaptureFixture[str], vault: Path, pw_file: Path
) -> None:
    args = ["--password-file", str(pw_file), "--password-command", echo_command(PW)]
    code, _, err = run(capsys, "points", "-r", str(vault), *args)
    assert code == 1 and "not both" in err


def test_command_line_beats_environment_beats_profile(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    vault: Path,
    pw_file: Path,
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("wrong\n")
    write_config(
        tmp_path,
        f'[profiles.default]\nvault = "{tmp_path / "nowhere"}"\npassword_file = "{wrong}"\n',
    )
    # the profile alone: its (wrong) vault
    code, _, err = run(capsys, "points")
    assert code == 1 and "nowhere" in err
    # the environment beats the profile; then the profile's wrong passphrase is used
    monkeypatch.setenv("STRONGROOM_VAULT", str(vault))
    code, _, err = run(capsys, "points")
    assert code == 1 and "wrong passphrase" in err
    monkeypatch.setenv("STRONGROOM_PASSWORD", PW)
    assert run(capsys, "points")[0] == 0
    # the command line beats the environment, for the vault and the passphrase
    code, _, err = run(capsys, "points", "-r", str(tmp_path / "elsewhere"))
    assert code == 1 and "elsewhere" in err
    code, _, err = run(capsys, "points", "--password-file", str(wrong))
    assert code == 1 and "wrong passphrase" in err
    code, _, err = run(capsys, "points", "--password-command", "echo wrong")
    assert code == 1 and "wrong passphrase" in err


def test_profile_by_name_and_environment(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    vault: Path,
) -> None:
    write_config(
        tmp_path,
        "# offsite and default\n"
        f'[profiles.default]\nvault = "{tmp_path / "nowhere"}"\n\n'
        f'[profiles.b]\nvault = "{vault}"\npassword_command = "echo {PW}"\n',
    )
    assert run(capsys, "--profile", "b", "points")[0] == 0
    monkeypatch.setenv("STRONGROOM_PROFILE", "b")
    assert run(capsys, "points")[0] == 0
    code, _, err = run(capsys, "points", "--profile", "c")
    assert code == 1 and "no profile 'c' (profiles: b, default)" in err


def test_profile_excludes_apply_to_file_backups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], vault: Path, pw_file: Path
) -> None:
    write_config(tmp_path, f'[profiles.default]\nvault = "{vault}"\nexcludes = ["*.tmp"]\n')
    src = tmp_path / "src"
    src.mkdir()
    (src / "keep").write_text("k")
    (src / "drop.tmp").write_text("d")
    code, _, err = run(capsys, "backup", "files", str(src), "--password-file", str(pw_file))
    assert code == 0, err
    code, out, _ = run(capsys, "ls", "latest", str(src), "--password-file", str(pw_file))
    assert out.split() == [f"{src}/keep"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[profiles.a]\nvault = \n", "config.toml:2: Invalid value"),
        (
            '[profiles.a]\nvault = "/v"\n\ncolour = "red"\n',
            "config.toml:4: profile 'a': unknown key",
        ),
        ('[profiles.a]\nexcludes = "*.tmp"\n', "config.toml:2: profile 'a': excludes must be"),
        ('verbose = true\n[profiles.a]\nvault = "/v"\n', "config.toml:1: unknown key 'verbose'"),
        ("[profiles.a]\nvault = 3\n", "config.toml:2: profile 'a': vault must be"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    write_config(tmp_path, text)
    code, _, err = run(capsys, "points", "--profile", "a")
    assert code == 1 and message in err and err.count("\n") == 1


def test_a_missing_config_file_only_matters_for_a_named_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "points")
    assert code == 1 and "no vault given" in err
    code, _, err = run(capsys, "points", "--profile", "x")
    assert code == 1 and "profile 'x': no config file" in err


def test_help_shows_no_bool_next_to_flags(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["points", "--help"], ["backup", "files", "--help"], ["--help"]):
        code, out, _ = run(capsys, *args)
        assert code == 0 and "<bool>" not in out
    code, out, _ = run(capsys, "points", "--help")
    assert "<str>" in out  # value options keep their type
