"""Local Kafka and Redis without Docker: start, stop and inspect them, and create freshet's topics.

Kafka runs in KRaft combined mode (one node is both broker and controller) from the official jars on
Maven Central, resolved once by ``deploy/kafka/pom.xml`` into ``<cache_dir>/kafka/lib``. Redis is the
machine's ``redis-server``. Both listen on 127.0.0.1, keep logs and data under ``cache_dir`` and are
stopped by the PID file written when freshet started them. When something already listens on a
configured port, nothing is started: the settings point at a running server.

>>> s = Settings(kafka_port=free_port(), redis_port=free_port(), cache_dir=Path("/tmp/freshet-doc"))
>>> services_status(s)["kafka"]["running"], services_status(s)["redis"]["started_by_freshet"]
(False, False)
>>> services_down(s)  # harmless when nothing runs
[]
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypedDict

from streams.errors import FreshetError
from streams.settings import Settings
from streams.topics import TOPIC_BY_NAME

# A KRaft cluster id is 16 bytes in URL-safe base64. One fixed id is enough: every local broker is
# a single-node cluster of its own, in its own data directory.
KAFKA_CLUSTER_ID = "ZnJlc2hldC1rcmFmdC0wMQ"  # base64url(b"freshet-kraft-01")
KAFKA_STARTED_LINE = "Kafka Server started"
KAFKA_START_TIMEOUT_S = 90.0
REDIS_START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 30.0
# Compacted so the latest version of each model survives retention; the other topics are plain logs.

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
_POM = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "pom.xml"
_INSTALL_HINTS = {
    "java": "install a JDK 17 (apt-get install openjdk-17-jre-headless)",
    "mvn": "install Maven (apt-get install maven)",
}


class ServiceError(FreshetError, RuntimeError):
    """A local service cannot be started, stopped or reached; the message says what to do.

    >>> str(ServiceError("java not found on PATH: install a JDK 17"))
    'java not found on PATH: install a JDK 17'
    """


class ServiceStatus(TypedDict):
    running: bool
    pid: int | None
    host: str
    port: int
    started_by_freshet: bool
    log: str


# --- small network helpers ------------------------------------------------------------------------


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``.

    >>> port_open("127.0.0.1", free_port())
    False
    """
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout_s: float = 30.0) -> None:
    """Block until ``host:port`` accepts connections; :class:`ServiceError` after ``timeout_s``.

    >>> wait_for_port("127.0.0.1", free_port(), timeout_s=0.2)
    Traceback (most recent call last):
    ...
    streams.ops.services.ServiceError: nothing listens on 127.0.0.1:... after 0.2 s: ...
    """
    deadline = time.monotonic() + timeout_s
    while not port_open(host, port):
        if time.monotonic() >= deadline:
            raise ServiceError(
                f"nothing listens on {host}:{port} after {timeout_s:g} s: "
                "start the server or check the host and port settings"
            )
        time.sleep(0.1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it).

    >>> 1024 <= free_port() <= 65535
    True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- paths -----------------------------------------------------------------------------------------


def _cache(settings: Settings) -> Path:
    # Absolute: the paths end up in server.properties and in processes started with another cwd.
    return Path(settings.cache_dir).expanduser().resolve()


def kafka_dir(settings: Settings) -> Path:
    """Where the broker on ``settings.kafka_port`` keeps its config, logs and data."""
    return _cache(settings) / "kafka" / str(settings.kafka_port)


def redis_dir(settings: Settings) -> Path:
    """Where the Redis server on ``settings.redis_port`` keeps its log (and nothing else)."""
    return _cache(settings) / "redis" / str(settings.redis_port)


# Each service freshet starts: the settings field holding its port, and a word of its command line (a PID
# file whose process no longer runs this program belongs to a recycled PID and is never signalled).
SERVICE_PORTS = {
    "kafka": "kafka_port",
    "redis": "redis_port",
    "prometheus": "prometheus_port",
    "alertmanager": "alertmanager_port",
}
_MARKERS = {"kafka": "kafka.Kafka", "redis": "redis-server", "prometheus": "prometheus", "alertmanager": "alertmanager"}


def service_dir(settings: Settings, name: str) -> Path:
    """Where the service ``name`` on its configured port keeps its config, logs and data."""
    return _cache(settings) / name / str(getattr(settings, SERVICE_PORTS[name]))


def _pid_file(settings: Settings, name: str) -> Path:
    port = getattr(settings, SERVICE_PORTS[name])
    return _cache(settings) / "run" / f"{name}-{port}.pid"


def _log_file(settings: Settings, name: str) -> Path:
    if name == "kafka":
        return kafka_dir(settings) / "server.log"
    return service_dir(settings, name) / f"{name}.log"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (two CLIs starting the same broker at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _require_local(host: str, port: int, what: str) -> None:
    if host not in _LOCAL_HOSTS:
        raise ServiceError(
            f"{what} is not reachable at {host}:{port} and freshet only starts services on this machine: "
            f"start {what} there or point the settings at 127.0.0.1"
        )


def _which(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise ServiceError(f"{program} not found on PATH: {_INSTALL_HINTS[program]}")
    return path


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip()) or "(empty log)"


# --- processes by PID file -------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        # Reap it if it is our own child that has exited, or it stays a zombie that looks alive.
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        # Field 3 is the state; "Z" is a zombie of some other parent.
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None  # no /proc (not Linux): trust the PID file


def _read_pid(settings: Settings, name: str) -> int | None:
    """The PID from the PID file when that process still runs and is the right program; else None."""
    path = _pid_file(settings, name)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    if not _pid_alive(pid):
        return None
    cmdline = _cmdline(pid)
    # A recycled PID belongs to some other program: never signal it.
    if cmdline is not None and _MARKERS[name] not in cmdline:
        return None
    return pid


def _spawn(args: Sequence[str], log: Path, cwd: Path, pid_file: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        # A session of its own: Ctrl-C in the terminal that started it does not stop the server.
        proc = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc


def _stop(settings: Settings, name: str) -> bool:
    pid_file = _pid_file(settings, name)
    pid = _read_pid(settings, name)
    stopped = False
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid):
                time.sleep(0.05)
        stopped = True
    pid_file.unlink(missing_ok=True)
    return stopped


# --- Kafka -----------------------------------------------------------------------------------------


def kafka_classpath(settings: Settings) -> str:
    """The broker's Java classpath; resolves the jars with Maven into ``<cache_dir>/kafka/lib`` once.

    A marker file holds the pom's hash, so a changed pom (a new Kafka version) resolves again.
    """
    if not _POM.is_file():
        raise ServiceError(
            f"{_POM} not found: run from a freshet source checkout, or start Kafka yourself "
            "and set FRESHET_KAFKA_HOST/FRESHET_KAFKA_PORT"
        )
    lib = _cache(settings) / "kafka" / "lib"
    marker = lib / ".resolved"
    wanted = hashlib.sha256(_POM.read_bytes()).hexdigest()
    with _locked(_cache(settings) / "kafka" / "lib.lock"):
        if not (marker.is_file() and marker.read_text().strip() == wanted):
            mvn = _which("mvn")
            shutil.rmtree(lib, ignore_errors=True)
            lib.mkdir(parents=True)
            cmd = [mvn, "-q", "-B", "-f", str(_POM), "dependency:copy-dependencies",
                   "-DincludeScope=runtime", f"-DoutputDirectory={lib}"]  # fmt: skip
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                errors = [ln for ln in (result.stdout + result.stderr).splitlines() if "ERROR" in ln]
                detail = errors[0].strip() if errors else f"exit code {result.returncode}"
                raise ServiceError(
                    f"Maven could not resolve the Kafka jars ({detail}): "
                    "check access to Maven Central or run the mvn command by hand"
                )
            marker.write_text(wanted + "\n")
    # Java expands "dir/*" to every jar in dir; it keeps `ps` readable.
    return str(lib / "*")


def kafka_server_properties(settings: Settings) -> dict[str, str]:
    """The broker's ``server.properties`` for one node in KRaft combined mode.

    >>> s = Settings(kafka_port=19092, kafka_controller_port=19093, cache_dir=Path("/tmp/c"), partitions=3)
    >>> props = kafka_server_properties(s)
    >>> props["listeners"]
    'PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093'
    >>> props["controller.quorum.voters"], props["num.partitions"], props["log.dirs"]
    ('1@127.0.0.1:19093', '3', '/tmp/c/kafka/19092/data')
    """
    port, cport = settings.kafka_port, settings.kafka_controller_port
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        # A static quorum of one voter; formatted without --standalone.
        "controller.quorum.voters": f"1@127.0.0.1:{cport}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://{settings.kafka_host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(kafka_dir(settings) / "data"),
        "num.partitions": str(settings.partitions),
        "auto.create.topics.enable": "true",
        # One node: internal topics cannot have more than one replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        # The default 50 partitions make the first consumer group wait seconds for its coordinator.
        "offsets.topic.num.partitions": "4",
        # Consumers join at once instead of waiting 3 s for more members (tests, local runs).
        "group.initial.rebalance.delay.ms": "0",
    }


def _properties_text(props: dict[str, str]) -> str:
    header = "# Written by freshet (streams/ops/services.py); rewritten at every start.\n"
    return header + "".join(f"{key}={value}\n" for key, value in props.items())


def _log4j_text(log: Path) -> str:
    # Truncated at every start (Append=false), so the "started" line we wait for is from this run.
    return "\n".join(
        [
            "log4j.rootLogger=INFO, file",
            "log4j.appender.file=org.apache.log4j.RollingFileAppender",
            f"log4j.appender.file.File={log}",
            "log4j.appender.file.Append=false",
            "log4j.appender.file.MaxFileSize=20MB",
            "log4j.appender.file.MaxBackupIndex=2",
            "log4j.appender.file.layout=org.apache.log4j.PatternLayout",
            "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n",
            "log4j.logger.state.change.logger=WARN",
            "log4j.logger.kafka.request.logger=WARN",
            "log4j.logger.org.apache.kafka.clients=WARN",
            "",
        ]
    )


def _write_kafka_config(settings: Settings) -> tuple[Path, Path]:
    home = kafka_dir(settings)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "server.properties"
    config.write_text(_properties_text(kafka_server_properties(settings)))
    log4j = home / "log4j.properties"
    log4j.write_text(_log4j_text(_log_file(settings, "kafka")))
    tools_log4j = home / "tools-log4j.properties"
    tools_log4j.write_text(
        "log4j.rootLogger=WARN, stderr\n"
        "log4j.appender.stderr=org.apache.log4j.ConsoleAppender\n"
        "log4j.appender.stderr.Target=System.err\n"
        "log4j.appender.stderr.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.stderr.layout.ConversionPattern=%p %m (%c)%n\n"
    )
    return config, log4j


def _format_storage(settings: Settings, java: str, classpath: str, config: Path) -> None:
    if (kafka_dir(settings) / "data" / "meta.properties").is_file():
        return
    tools_log4j = kafka_dir(settings) / "tools-log4j.properties"
    cmd = [java, "-Xmx256m", "-Djava.awt.headless=true", f"-Dlog4j.configuration=file:{tools_log4j}",
           "-cp", classpath, "kafka.tools.StorageTool", "format",
           "-t", KAFKA_CLUSTER_ID, "-c", str(config), "--ignore-formatted"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = [ln.strip() for ln in (result.stderr + result.stdout).splitlines() if ln.strip()]
        raise ServiceError(
            f"formatting Kafka storage in {kafka_dir(settings) / 'data'} failed "
            f"({lines[-1] if lines else f'exit code {result.returncode}'}): delete that folder and retry"
        )


def start_kafka(settings: Settings) -> bool:
    """Start a one-node Kafka (KRaft) on ``kafka_port``; False when something already listens there.

    Blocks until the broker logs "Kafka Server started" (:class:`ServiceError` with the log's tail
    after 90 s or when the JVM exits).
    """
    host, port, cport = settings.kafka_host, settings.kafka_port, settings.kafka_controller_port
    if port_open(host, port):
        return False
    _require_local(host, port, "Kafka")
    java = _which("java")
    with _locked(_cache(settings) / "run" / f"kafka-{port}.lock"):
        # Another process may have started it while we waited for the lock.
        if port_open(host, port):
            return False
        if _read_pid(settings, "kafka") is not None:
            wait_for_port(host, port, KAFKA_START_TIMEOUT_S)
            return False
        if port_open("127.0.0.1", cport):
            raise ServiceError(
                f"Kafka controller port {cport} is taken by another program: "
                "set FRESHET_KAFKA_CONTROLLER_PORT to a free port"
            )
        classpath = kafka_classpath(settings)
        config, log4j = _write_kafka_config(settings)
        _format_storage(settings, java, classpath, config)
        home = kafka_dir(settings)
        log = _log_file(settings, "kafka")
        log.unlink(missing_ok=True)
        out = home / "kafka.out"
        # Small heap and the serial collector: a local broker for tests and demos, not production.
        cmd = [java, "-Xmx512m", "-Xms256m", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError",
               "-Djava.awt.headless=true", f"-Dlog4j.configuration=file:{log4j}",
               f"-Dkafka.logs.dir={home}", "-cp", classpath, "kafka.Kafka", str(config)]  # fmt: skip
        proc = _spawn(cmd, out, home, _pid_file(settings, "kafka"))
        deadline = time.monotonic() + KAFKA_START_TIMEOUT_S
        while True:
            with contextlib.suppress(OSError):
                if KAFKA_STARTED_LINE in log.read_text(errors="replace"):
                    break
            if proc.poll() is not None:
                _pid_file(settings, "kafka").unlink(missing_ok=True)
                raise ServiceError(
                    f"Kafka exited with code {proc.returncode} while starting (logs in {home}): "
                    f"{_tail(out, 5)} | {_tail(log)}"
                )
            if time.monotonic() >= deadline:
                _stop(settings, "kafka")
                raise ServiceError(
                    f"Kafka did not start within {KAFKA_START_TIMEOUT_S:g} s (logs in {home}): {_tail(log)}"
                )
            time.sleep(0.2)
        wait_for_port(host, port, 10.0)
    return True


def stop_kafka(settings: Settings) -> bool:
    """Stop the broker freshet started on ``kafka_port`` (SIGTERM, then SIGKILL after 30 s).

    True when a process was stopped; harmless when none runs.
    """
    return _stop(settings, "kafka")


# --- Redis -----------------------------------------------------------------------------------------


def apt_program(program: str, package: str) -> str:
    """The path of ``program``; installs Debian's ``package`` with apt-get first when it is missing.

    Installing needs root and apt-get (CI and fresh machines); otherwise the error says what to install.
    Recommended packages are left out, and the package lists are refreshed once when the first try fails.

    >>> apt_program("sh", "dash")
    '/usr/bin/sh'
    """
    path = shutil.which(program)
    if path is not None:
        return path
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise ServiceError(f"{program} not found on PATH: install it (sudo apt-get install {package})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Wait for another apt-get (another test session installing something) instead of failing at once.
    install = [apt, "install", "-y", "-o", "DPkg::Lock::Timeout=300", "--no-install-recommends", package]
    result = subprocess.run(install, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        # A fresh machine often has no package lists yet.
        subprocess.run([apt, "update"], capture_output=True, text=True, env=env, check=False)
        result = subprocess.run(install, capture_output=True, text=True, env=env, check=False)
    path = shutil.which(program)
    if result.returncode != 0 or path is None:
        lines = [ln.strip() for ln in (result.stderr + result.stdout).splitlines() if ln.strip()]
        detail = lines[-1] if lines else f"exit code {result.returncode}"
        raise ServiceError(
            f"{program} not found and apt-get failed: {detail}; install it by hand (apt-get install {package})"
        )
    return path


def _redis_server() -> str:
    return apt_program("redis-server", "redis-server")


def _redis_ping(host: str, port: int) -> bool:
    import redis

    client = redis.Redis(host=host, port=port, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def start_redis(settings: Settings) -> bool:
    """Start ``redis-server`` on ``redis_port`` (append-only file, fsync every second: the registry survives
    a restart); False when something already listens.

    Installs Debian's ``redis-server`` with apt-get when it is missing and we run as root.
    """
    host, port = settings.redis_host, settings.redis_port
    if port_open(host, port):
        return False
    _require_local(host, port, "Redis")
    server = _redis_server()
    with _locked(_cache(settings) / "run" / f"redis-{port}.lock"):
        if port_open(host, port):
            return False
        if _read_pid(settings, "redis") is not None:
            wait_for_port(host, port, REDIS_START_TIMEOUT_S)
            return False
        home = redis_dir(settings)
        home.mkdir(parents=True, exist_ok=True)
        log = _log_file(settings, "redis")
        # The append-only file (fsync every second) keeps the model registry across a Redis restart.
        cmd = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
               "--appendfsync", "everysec",
               "--daemonize", "no", "--dir", str(home)]  # fmt: skip
        proc = _spawn(cmd, log, home, _pid_file(settings, "redis"))
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while not _redis_ping(host, port):
            if proc.poll() is not None:
                _pid_file(settings, "redis").unlink(missing_ok=True)
                raise ServiceError(
                    f"redis-server exited with code {proc.returncode} while starting: {_tail(log)}"
                )
            if time.monotonic() >= deadline:
                _stop(settings, "redis")
                raise ServiceError(
                    f"redis-server did not answer PING within {REDIS_START_TIMEOUT_S:g} s: {_tail(log)}"
                )
            time.sleep(0.05)
    return True


def stop_redis(settings: Settings) -> bool:
    """Stop the Redis server freshet started on ``redis_port``; harmless when none runs."""
    return _stop(settings, "redis")


# --- both ------------------------------------------------------------------------------------------


def services_up(settings: Settings) -> list[str]:
    """Start Kafka and Redis where nothing listens yet; the names of those started.

    This starts regardless of ``settings.start_services``; see :func:`require_services`.
    """
    started = []
    if start_kafka(settings):
        started.append("kafka")
    if start_redis(settings):
        started.append("redis")
    return started


def services_down(settings: Settings) -> list[str]:
    """Stop the services freshet started (by PID file); the names of those stopped."""
    stopped = []
    if stop_redis(settings):
        stopped.append("redis")
    if stop_kafka(settings):
        stopped.append("kafka")
    return stopped


def require_services(settings: Settings) -> list[str]:
    """What a worker or producer calls first: start the services if allowed, else check they run.

    Returns the names started; :class:`ServiceError` when a server is down and
    ``start_services`` is off.
    """
    if settings.start_services:
        return services_up(settings)
    for name, host, port in (
        ("Kafka", settings.kafka_host, settings.kafka_port),
        ("Redis", settings.redis_host, settings.redis_port),
    ):
        if not port_open(host, port):
            raise ServiceError(
                f"{name} is not reachable at {host}:{port} and FRESHET_START_SERVICES=0: "
                f"start it, fix FRESHET_{name.upper()}_HOST/PORT, or set FRESHET_START_SERVICES=1"
            )
    return []


def services_status(settings: Settings, *, monitoring: bool = False) -> dict[str, ServiceStatus]:
    """For ``kafka`` and ``redis`` (and ``prometheus`` and ``alertmanager`` with ``monitoring``): running
    (the port answers), pid and whether freshet started it."""
    out: dict[str, ServiceStatus] = {}
    names = [
        ("kafka", settings.kafka_host, settings.kafka_port),
        ("redis", settings.redis_host, settings.redis_port),
    ]
    if monitoring:
        names += [
            ("prometheus", "127.0.0.1", settings.prometheus_port),
            ("alertmanager", "127.0.0.1", settings.alertmanager_port),
        ]
    for name, host, port in names:
        pid = _read_pid(settings, name)
        out[name] = ServiceStatus(
            running=port_open(host, port),
            pid=pid,
            host=host,
            port=port,
            started_by_freshet=pid is not None,
            log=str(_log_file(settings, name)),
        )
    return out


# --- topics ----------------------------------------------------------------------------------------


def ensure_topics(settings: Settings, partitions: int | None = None, timeout_s: float = 30.0) -> None:
    """Create freshet's topics (``settings.topic(n)`` for every one of :data:`streams.topics.TOPICS`) if missing.

    Replication 1, ``partitions`` (default ``settings.partitions``), each with its ``config`` (``model-versions``
    compacted).
    Returns once every topic has a leader for each partition.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    count = settings.partitions if partitions is None else partitions
    wanted = {settings.topic(name): dict(t.config) for name, t in TOPIC_BY_NAME.items()}
    unreachable = ServiceError(
        f"Kafka is not reachable at {settings.kafka_bootstrap}: start it "
        "or fix FRESHET_KAFKA_HOST/FRESHET_KAFKA_PORT"
    )
    # The admin client would retry for 30 s before saying the same.
    if not port_open(settings.kafka_host, settings.kafka_port):
        raise unreachable
    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="freshet-admin")
    except KafkaError:
        raise unreachable from None
    try:
        missing = sorted(set(wanted) - set(admin.list_topics()))
        # NewTopic works with kafka-python 2.x and 3.x (3.x also takes a dict, 2.x does not).
        new = [
            NewTopic(t, num_partitions=count, replication_factor=1, topic_configs=wanted[t]) for t in missing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile by another process
                admin.create_topics(new, timeout_ms=int(timeout_s * 1000))
        deadline = time.monotonic() + timeout_s
        while (pending := _topics_not_ready(admin.describe_topics(list(wanted)), wanted)) != []:
            if time.monotonic() >= deadline:
                raise ServiceError(
                    f"Kafka topics not ready after {timeout_s:g} s: {', '.join(pending)}; "
                    f"see the broker log in {kafka_dir(settings)}"
                )
            time.sleep(0.1)
    except KafkaError as exc:
        raise ServiceError(f"creating topics on {settings.kafka_bootstrap} failed: {exc!r}") from None
    finally:
        admin.close()


def _topics_not_ready(described: list[dict[str, Any]], wanted: dict[str, Any]) -> list[str]:
    """Names in ``wanted`` without metadata or without a leader on every partition.

    Accepts both kafka-python 3.x keys (``name``, ``leader_id``) and 2.x keys (``topic``, ``leader``).

    >>> described = [{"name": "a", "error_code": 0, "partitions": [{"leader_id": 1}]}]
    >>> _topics_not_ready(described, {"a": {}, "b": {}})
    ['b']
    """
    ready = set()
    for topic in described:
        name = topic.get("name", topic.get("topic"))
        parts = topic.get("partitions") or []
        if (
            topic.get("error_code", 0) == 0
            and parts
            and all(
                p.get("error_code", 0) == 0 and p.get("leader_id", p.get("leader", -1)) >= 0 for p in parts
            )
        ):
            ready.add(name)
    return sorted(set(wanted) - ready)
