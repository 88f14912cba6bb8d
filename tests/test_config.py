"""Settings: flag over environment over TOML file over default, validated once, the secret out of sight.

`load_settings(flags, environ, config_file)` takes its sources as arguments, so no test
patches the process environment; the autouse fixture in conftest runs each test in an
empty temporary directory, which is where `./flowsync.toml` is looked for.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from sync.app.settings import SETTINGS, Settings, SettingSpec, load_settings
from sync.core.selection import ALL, parse_flow_ids
from sync.errors import ConfigError

README = Path(__file__).resolve().parent.parent / "README.md"
SECRET = "Zq9-sEcReT-4f1d-NEVER-PRINT"  # distinctive enough that finding it anywhere is a leak
PASSWORD = "hunter2-Xq7"  # in database and API URLs


@dataclass(frozen=True)
class Source:
    """One setting as the contract's table spells it, with a distinct value from each source."""

    key: str  # flag name for `load_settings`, and the key in the TOML file
    attribute: str  # the attribute of `Settings`
    env: str
    flag_name: str | None  # as the operator types it
    default: object
    flag: str  # raw text, as click hands it over
    flag_means: object
    env_text: str
    env_means: object
    file: object  # a TOML value
    file_means: object


# Each row: key, attribute, variable, flag, default; then (raw, meaning) from a flag, a variable, the file.
SOURCES = [
    Source(
        "database_url", "database_url", "FLOWSYNC_DATABASE_URL", "--database-url", "sqlite:///flowsync.db",
        "sqlite:///flag.db", "sqlite:///flag.db",
        "sqlite:///env.db", "sqlite:///env.db",
        "postgresql://flowsync@db.example/flows", "postgresql://flowsync@db.example/flows",
    ),
    Source(
        "base_url", "base_url", "FLOWSYNC_BASE_URL", "--base-url", "https://api.itniotech.com/otp",
        "https://flag.example/otp", "https://flag.example/otp",
        "http://127.0.0.1:8080", "http://127.0.0.1:8080",
        "https://file.example/otp/", "https://file.example/otp",
    ),
    Source(
        "api_key", "api_key", "FLOWSYNC_API_KEY", None, None,
        "unused", None,
        "env-key", "env-key",
        "file-key", "file-key",
    ),
    Source(
        "api_secret", "api_secret", "FLOWSYNC_API_SECRET", None, None,
        "unused", None,
        "env-secret", "env-secret",
        "file-secret", "file-secret",
    ),
    Source(
        "flow_ids", "flow_ids", "FLOWSYNC_FLOW_IDS", "--flow-ids", None,
        "1-3", parse_flow_ids("1-3"),
        "ALL", ALL,
        [1, 2, "10-20"], parse_flow_ids("1,2,10-20"),
    ),
    Source(
        "interval", "interval_s", "FLOWSYNC_INTERVAL", "--interval", 300,
        "60", 60,
        "120.5", 120.5,
        900, 900,
    ),
    Source(
        "cron", "cron", "FLOWSYNC_CRON", "--cron", None,
        "0 * * * *", "0 * * * *",
        "*/5 * * * *", "*/5 * * * *",
        "0 9 * * 1-5", "0 9 * * 1-5",
    ),
    Source(
        "concurrency", "concurrency", "FLOWSYNC_CONCURRENCY", "--concurrency", 8,
        "2", 2,
        "16", 16,
        4, 4,
    ),
    Source(
        "timeout", "timeout_s", "FLOWSYNC_TIMEOUT", "--timeout", 10,
        "2.5", 2.5,
        "30", 30,
        1.5, 1.5,
    ),
    Source(
        "retries", "retries", "FLOWSYNC_RETRIES", "--retries", 3,
        "0", 0,
        "20", 20,
        7, 7,
    ),
    Source(
        "max_details_bytes", "max_details_bytes", "FLOWSYNC_MAX_DETAILS_BYTES", "--max-details-bytes",
        8 * 2**20,
        "65536", 65536,
        "1048576", 1048576,
        2**30, 2**30,
    ),
    Source(
        "max_listing_bytes", "max_listing_bytes", "FLOWSYNC_MAX_LISTING_BYTES", "--max-listing-bytes",
        64 * 2**20,
        "131072", 131072,
        "4294967296", 2**32,
        300_000_000, 300_000_000,
    ),
    Source(
        "audit_key", "audit_key", "FLOWSYNC_AUDIT_KEY", None, None,
        "unused", None,
        "env-audit-key", "env-audit-key",
        "file-audit-key", "file-audit-key",
    ),
]  # fmt: skip
BY_KEY = {source.key: source for source in SOURCES}
WITH_FLAG = [source for source in SOURCES if source.flag_name]


def toml(**values: object) -> str:
    """TOML text for simple values (JSON's strings, numbers, booleans and arrays are valid TOML)."""
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())


def value_of(settings: Settings, attribute: str) -> object:
    value = getattr(settings, attribute)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A path for an explicit `--config` file, outside the working directory."""
    folder = tmp_path / "etc"
    folder.mkdir()
    return folder / "settings.toml"


@pytest.mark.parametrize("source", SOURCES, ids=lambda source: source.key)
def test_each_setting_is_declared_as_the_contract_spells_it(source: Source) -> None:
    """The one declaration of a setting gives it the contract's variable, flag, TOML key and default."""
    spec = SETTINGS[source.key]
    assert (spec.attribute, spec.env, spec.flag, spec.default) == (
        source.attribute,
        source.env,
        source.flag_name,
        source.default,
    )


def readme_row(spec: SettingSpec) -> list[str]:
    """A declared setting as the README's configuration table shows it."""
    return [
        f"`{spec.env}`",
        f"`{spec.flag}`" if spec.flag else "–",
        f"`{spec.key}`",
        "none" if spec.default is None else f"`{spec.default}`",
        spec.help,
    ]


def test_the_readme_table_lists_the_declared_settings_exactly() -> None:
    """The README's configuration table has one row per declared setting, in order, spelled as declared."""
    section = README.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    header, *rows = (
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| ")
    )
    expected = [readme_row(spec) for spec in SETTINGS.values()]
    assert header == ["env var", "flag", "TOML key", "default", "meaning"]
    assert rows == expected, "the rows as declared:\n" + "\n".join(
        f"| {' | '.join(row)} |" for row in expected
    )


@pytest.mark.parametrize("source", SOURCES, ids=lambda source: source.key)
def test_default_when_no_source_sets_it(source: Source) -> None:
    """With no flag, variable or file, each setting has the default of the contract's table."""
    assert value_of(load_settings({}, {}), source.attribute) == source.default


@pytest.mark.parametrize("source", SOURCES, ids=lambda source: source.key)
def test_file_beats_default(source: Source, config_file: Path) -> None:
    """A value in the TOML file replaces the default."""
    config_file.write_text(toml(**{source.key: source.file}))
    assert value_of(load_settings({}, {}, config_file), source.attribute) == source.file_means


@pytest.mark.parametrize("source", SOURCES, ids=lambda source: source.key)
def test_environment_beats_file(source: Source, config_file: Path) -> None:
    """An environment variable replaces the file's value."""
    config_file.write_text(toml(**{source.key: source.file}))
    settings = load_settings({}, {source.env: source.env_text}, config_file)
    assert value_of(settings, source.attribute) == source.env_means


@pytest.mark.parametrize("source", WITH_FLAG, ids=lambda source: source.key)
def test_flag_beats_environment_and_file(source: Source, config_file: Path) -> None:
    """A command-line flag replaces both the variable and the file."""
    config_file.write_text(toml(**{source.key: source.file}))
    settings = load_settings({source.key: source.flag}, {source.env: source.env_text}, config_file)
    assert value_of(settings, source.attribute) == source.flag_means


@pytest.mark.parametrize("source", WITH_FLAG, ids=lambda source: source.key)
def test_a_flag_left_unset_falls_through_to_the_environment(source: Source) -> None:
    """A flag that was not given arrives as None and does not hide the variable."""
    settings = load_settings({source.key: None}, {source.env: source.env_text})
    assert value_of(settings, source.attribute) == source.env_means


@pytest.mark.parametrize("key", ["api_key", "api_secret"])
def test_the_key_and_secret_have_no_flag(key: str) -> None:
    """The key and secret come only from the environment or the file, never from a command line."""
    source = BY_KEY[key]
    assert value_of(load_settings({key: "from-a-flag"}, {}), source.attribute) is None
    settings = load_settings({key: "from-a-flag"}, {source.env: source.env_text})
    assert value_of(settings, source.attribute) == source.env_means


def test_flowsync_toml_in_the_working_directory_is_read() -> None:
    """Without `--config`, `./flowsync.toml` is used when it exists."""
    Path("flowsync.toml").write_text(toml(concurrency=3, flow_ids="all"))
    settings = load_settings({}, {})
    assert (settings.concurrency, settings.flow_ids) == (3, ALL)


def test_an_explicit_config_file_replaces_the_working_directory_one(config_file: Path) -> None:
    """`--config PATH` is read instead of `./flowsync.toml`; the two are not merged."""
    Path("flowsync.toml").write_text(toml(concurrency=3, retries=9))
    config_file.write_text(toml(concurrency=5))
    settings = load_settings({}, {}, config_file)
    assert (settings.concurrency, settings.retries) == (5, 3)


def test_an_empty_variable_for_an_optional_text_setting_means_unset(config_file: Path) -> None:
    """`FLOWSYNC_CRON=` switches the file's cron off rather than being an invalid expression."""
    config_file.write_text(toml(cron="0 * * * *", api_key="file-key"))
    settings = load_settings({}, {"FLOWSYNC_CRON": "", "FLOWSYNC_API_KEY": " "}, config_file)
    assert (settings.cron, settings.api_key) == (None, None)


BAD_VALUES = [
    # (setting, where it is set, the value, part of the expected problem)
    ("concurrency", "flag", "many", "valid integer"),
    ("concurrency", "env", "many", "valid integer"),
    ("concurrency", "file", "many", "valid integer"),
    ("concurrency", "file", 2.5, "integer"),
    ("concurrency", "file", True, "boolean"),
    ("concurrency", "env", "0", "greater than or equal to 1"),
    ("interval", "env", "0", "greater than 0"),
    ("interval", "flag", "-5", "greater than 0"),
    ("interval", "file", "soon", "valid number"),
    ("timeout", "flag", "0", "greater than 0"),
    ("timeout", "env", "-1", "greater than 0"),
    ("retries", "file", 21, "less than or equal to 20"),
    ("retries", "flag", "-1", "greater than or equal to 0"),
    ("max_details_bytes", "env", "1024", "greater than or equal to 65536"),
    ("max_details_bytes", "flag", "8MiB", "valid integer"),
    ("max_listing_bytes", "file", 2**33, "less than or equal to 4294967296"),
    ("cron", "env", "* * * *", "5 fields"),
    ("cron", "flag", "61 * * * *", "61"),
    ("cron", "file", "0 0 1 * 1", "day-of-week"),
    ("flow_ids", "flag", "5-3", "'5-3'"),
    ("flow_ids", "env", "1,,2", "''"),
    ("flow_ids", "file", 1.5, "flow IDs"),
    ("flow_ids", "file", True, "flow IDs"),
    ("base_url", "env", "ftp://api.example/otp", "http(s) URL"),
    ("base_url", "flag", "api.itniotech.com/otp", "http(s) URL"),
    ("base_url", "file", "https://", "http(s) URL"),
    ("base_url", "env", "https:///otp", "no host"),
    ("base_url", "flag", "https://:8443/otp", "no host"),
    ("base_url", "file", "http://?x=1", "no host"),
    ("base_url", "env", "https://api.example:99999/otp", "port"),
    ("database_url", "flag", "not a url", "not a database URL"),
    ("database_url", "env", "flowsync.db", "not a database URL"),
    ("database_url", "file", 5432, "valid string"),
    ("api_key", "env", " key ", "surrounding spaces"),
    ("api_secret", "env", "a\x07b", "printable"),
    # A secret, or a URL that may hold a password, is refused without being repeated.
    *(
        (key, where, value.format(password=PASSWORD), problem)
        for key, value, problem in [
            ("database_url", "postgresql://flowsync:{password}@db:port/flows", "not a database URL"),
            ("database_url", "flowsync:{password}@db/flows", "not a database URL"),
            ("base_url", "ftp://flowsync:{password}@api.example/otp", "http(s) URL"),
            # The API authenticates by headers: credentials in its URL are refused, never echoed.
            ("base_url", "http://flowsync:{password}@api.example/otp", "user name or password"),
            ("base_url", "https://flowsync:{password}@api.example/otp", "user name or password"),
            ("base_url", "https://flowsync:{password}@/otp", "user name or password"),
            ("base_url", "https://{password}@api.example/otp", "user name or password"),
            ("base_url", "https://flowsync:{password}@api.example:8443?x=1", "user name or password"),
            ("api_secret", "{password}\x07", "printable"),
        ]
        for where in ("flag", "env", "file")
        if where != "flag" or key != "api_secret"
    ),
]


@dataclass
class Sources:
    """The three sources `load_settings` reads, filled one value at a time."""

    config_file: Path
    flags: dict[str, object] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=dict)
    file_values: dict[str, object] = field(default_factory=dict)

    def put(self, key: str, where: str, value: object) -> str:
        """Set `key` in the flags, the environment or the file; return how an error names that place."""
        source = BY_KEY[key]
        if where == "flag":
            self.flags[key] = value
            return str(source.flag_name)
        if where == "env":
            self.environ[source.env] = str(value)
            return source.env
        self.file_values[key] = value
        return f"{key} in {self.config_file}"

    def load(self) -> Settings:
        if self.file_values:
            self.config_file.write_text(toml(**self.file_values))
        return load_settings(self.flags, self.environ, self.config_file if self.file_values else None)


@pytest.mark.parametrize(("key", "where", "value", "problem"), BAD_VALUES)
def test_a_malformed_value_is_a_config_error_naming_its_source(
    key: str, where: str, value: object, problem: str, config_file: Path
) -> None:
    """Each bad value raises ConfigError whose `setting` says which flag, variable or file key to fix."""
    sources = Sources(config_file)
    expected = sources.put(key, where, value)
    with pytest.raises(ConfigError) as caught:
        sources.load()
    assert caught.value.setting == expected
    assert problem in caught.value.problem
    assert str(caught.value) == f"{caught.value.setting}: {caught.value.problem}"
    assert PASSWORD not in str(caught.value)


def test_a_bad_value_that_holds_no_secret_is_quoted() -> None:
    """Other bad values are repeated, so the operator sees what was read."""
    with pytest.raises(ConfigError) as caught:
        load_settings({"concurrency": "many"}, {})
    assert caught.value.problem.endswith("(got 'many')")


@pytest.mark.parametrize("cron_from", ["flag", "env", "file"])
@pytest.mark.parametrize("interval_from", ["flag", "env", "file"])
def test_a_cron_schedule_replaces_an_interval_wherever_each_was_set(
    interval_from: str, cron_from: str, config_file: Path
) -> None:
    """As the contract says, a cron schedule replaces the interval; the settings say where each came from."""
    sources = Sources(config_file)
    cron_origin = sources.put("cron", cron_from, "0 * * * *")
    interval_origin = sources.put("interval", interval_from, 60)
    settings = sources.load()
    assert settings.cron == "0 * * * *"
    assert settings.interval_ignored
    assert (settings.source("cron"), settings.source("interval")) == (cron_origin, interval_origin)


def test_a_cron_schedule_replaces_the_default_interval() -> None:
    """A default interval is never a conflict: a cron schedule alone is accepted."""
    settings = load_settings({}, {"FLOWSYNC_CRON": "0 * * * *"})
    assert (settings.cron, settings.interval_s) == ("0 * * * *", 300)
    assert not settings.interval_ignored
    assert settings.source("interval") == "default"


def test_an_empty_cron_variable_leaves_the_file_interval_alone(config_file: Path) -> None:
    """`FLOWSYNC_CRON=` clears the file's cron schedule, so the file's interval is no conflict."""
    config_file.write_text(toml(cron="0 * * * *", interval=60))
    settings = load_settings({}, {"FLOWSYNC_CRON": ""}, config_file)
    assert (settings.cron, settings.interval_s) == (None, 60)


def test_a_bad_value_in_flowsync_toml_names_that_file() -> None:
    """The default file is named as the operator would find it, relative to the working directory."""
    Path("flowsync.toml").write_text(toml(retries=99))
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {})
    assert caught.value.setting == "retries in flowsync.toml"


def test_a_higher_source_hides_a_bad_value_below_it(config_file: Path) -> None:
    """Only the value that wins is validated: a good variable overrides a bad file entry."""
    config_file.write_text(toml(concurrency="many"))
    assert load_settings({}, {"FLOWSYNC_CONCURRENCY": "4"}, config_file).concurrency == 4


@pytest.mark.parametrize(
    ("text", "setting", "problem"),
    [
        pytest.param("concurency = 4\n", "concurency in {path}", "unknown setting", id="unknown-key"),
        pytest.param(
            "interval_s = 60\n", "interval_s in {path}", "unknown setting", id="attribute-name-not-a-key"
        ),
        pytest.param("[flowsync]\nconcurrency = 4\n", "flowsync in {path}", "unknown setting", id="table"),
        pytest.param("concurrency = \n", "{path}", "not valid TOML", id="missing-value"),
        pytest.param("concurrency = 4\nconcurrency = 5\n", "{path}", "not valid TOML", id="duplicate-key"),
        pytest.param("[[[\n", "{path}", "not valid TOML", id="garbage"),
    ],
)
def test_a_bad_config_file_is_a_config_error(
    text: str, setting: str, problem: str, config_file: Path
) -> None:
    """Invalid TOML and unknown keys are refused with the file (and key) named, before anything else."""
    config_file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {}, config_file)
    assert caught.value.setting == setting.format(path=config_file)
    assert problem in caught.value.problem


def test_a_missing_explicit_config_file_is_a_config_error(tmp_path: Path) -> None:
    """`--config` naming a file that does not exist is an error, unlike an absent ./flowsync.toml."""
    missing = tmp_path / "nowhere" / "flowsync.toml"
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {}, missing)
    assert caught.value.setting == "--config"
    assert str(missing) in caught.value.problem


COMPLETE = {"FLOWSYNC_API_KEY": "key", "FLOWSYNC_API_SECRET": SECRET, "FLOWSYNC_FLOW_IDS": "1-20"}


@pytest.mark.parametrize("missing", ["FLOWSYNC_API_KEY", "FLOWSYNC_API_SECRET", "FLOWSYNC_FLOW_IDS"])
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_require_api_names_the_missing_variable(missing: str, how: str) -> None:
    """`sync` and `run` need the key, the secret and the flow IDs; an empty variable counts as unset."""
    environ = {name: value for name, value in COMPLETE.items() if name != missing}
    if how == "empty":
        environ[missing] = ""
    settings = load_settings({}, environ)
    with pytest.raises(ConfigError) as caught:
        settings.require_api()
    assert caught.value.setting == missing
    assert "required" in caught.value.problem


def test_require_api_returns_the_key_secret_and_flow_ids() -> None:
    """With all three set, `require_api` hands them over, the secret still wrapped."""
    api = load_settings({}, COMPLETE).require_api()
    assert (api.api_key, api.api_secret.get_secret_value(), api.flow_ids) == (
        "key",
        SECRET,
        parse_flow_ids("1-20"),
    )
    assert SECRET not in f"{api} {api!r}"


@pytest.mark.parametrize("source", ["env", "file"])
def test_the_secret_never_shows_in_the_settings_text(source: str, config_file: Path) -> None:
    """`repr`, `str` and the JSON dump of Settings mask the secret, wherever it came from."""
    if source == "file":
        config_file.write_text(toml(api_secret=SECRET))
        settings = load_settings({}, {}, config_file)
    else:
        settings = load_settings({}, {"FLOWSYNC_API_SECRET": SECRET})
    assert settings.api_secret is not None
    assert settings.api_secret.get_secret_value() == SECRET
    for text in (
        repr(settings),
        str(settings),
        f"{settings}",
        settings.model_dump_json(),
        str(settings.model_dump()),
    ):
        assert SECRET not in text


@pytest.mark.parametrize(
    ("environ", "file_text"),
    [
        pytest.param({"FLOWSYNC_API_SECRET": SECRET, "FLOWSYNC_CONCURRENCY": "x"}, None, id="other-env-bad"),
        pytest.param({"FLOWSYNC_API_SECRET": SECRET + "\x00"}, None, id="secret-with-nul"),
        pytest.param({"FLOWSYNC_API_SECRET": SECRET + "\n"}, None, id="secret-with-newline"),
        pytest.param({}, toml(api_secret=SECRET, retries=99), id="other-file-key-bad"),
        pytest.param({}, toml(api_secret=[SECRET]), id="secret-as-list"),
        pytest.param({}, f"api_secret = {{ value = {json.dumps(SECRET)} }}\n", id="secret-as-table"),
        pytest.param({}, f'api_secret = "{SECRET}\n', id="unterminated-string"),
        pytest.param({}, f"api_secret = {SECRET}\n", id="bare-word"),
        pytest.param({}, toml(api_secrett=SECRET), id="misspelt-key"),
        pytest.param({}, toml(api_secret=SECRET) + "interval = 0\n", id="after-the-secret"),
    ],
)
def test_no_config_error_contains_the_secret(
    environ: dict[str, str], file_text: str | None, config_file: Path
) -> None:
    """Whatever is wrong, the error's message, attributes and formatted traceback never hold the secret."""
    if file_text is not None:
        config_file.write_text(file_text)
    with pytest.raises(ConfigError) as caught:
        load_settings({}, environ, config_file if file_text is not None else None)
    error = caught.value
    texts = [
        str(error),
        repr(error),
        error.setting,
        error.problem,
        "".join(traceback.format_exception(error)),
    ]
    for text in texts:
        assert SECRET not in text


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("concurrency", 1),
        ("api_secret", SecretStr("other")),
        ("flow_ids", ALL),
        ("database_url", "sqlite://"),
    ],
)
def test_settings_are_frozen(attribute: str, value: object) -> None:
    """Once built, Settings cannot be changed: every command sees what was validated."""
    settings = load_settings({}, COMPLETE)
    with pytest.raises(ValidationError, match="frozen"):
        setattr(settings, attribute, value)
