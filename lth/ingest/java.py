"""The Java runtime that Spark's driver starts, checked before any SparkSession.

Without it PySpark fails deep inside Py4J's gateway launch, with a traceback that never says
"install Java". `require_java` finds the same `java` Spark's launcher would and turns its
absence, or a too-old one, into one `ConfigError` naming the install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from lth.config.vocabulary import ConfigError

SPARK_MIN_JAVA = 17  # PySpark 4 runs on Java 17 or newer


def java_binary() -> str | None:
    """The `java` Spark would start: `$JAVA_HOME/bin/java` when JAVA_HOME is set, else `java` on PATH.

    That is the order of Spark's own launcher (bin/spark-class), so the check and the
    session never disagree about which runtime is meant.
    """
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        return str(candidate) if os.access(candidate, os.X_OK) else None
    return shutil.which("java")


def _major(version: str) -> int:
    """17 for "17.0.15", 8 for "1.8.0_392" (Java 8 and older number themselves 1.x); 0 if unreadable."""
    parts = version.split(".")
    if parts[0] == "1" and len(parts) > 1:
        parts = parts[1:]
    digits = parts[0].split("-")[0].split("+")[0]
    return int(digits) if digits.isdigit() else 0


def require_java(min_major: int = SPARK_MIN_JAVA) -> str:
    """Check that Spark will find a Java runtime of at least `min_major`.

    Args:
        min_major: The oldest Java major version accepted.

    Returns:
        The version string the runtime reports, e.g. "17.0.15".

    Raises:
        ConfigError: If there is no `java`, it does not run, or it is older than `min_major`;
            the message says how to install one.
    """
    hint = f"install Java {min_major} (Debian: apt-get install openjdk-{min_major}-jre-headless) or set JAVA_HOME"
    java = java_binary()
    if java is None:
        where = (f"JAVA_HOME={os.environ['JAVA_HOME']} has no executable bin/java" if os.environ.get("JAVA_HOME")
                 else "`java` is not on PATH")
        raise ConfigError(f"Spark needs Java {min_major}+, but {where}: {hint}")
    try:  # `java -version` writes its banner to stderr: openjdk version "17.0.15" 2025-04-15
        banner = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False).stderr
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ConfigError(f"Spark needs Java {min_major}+, but {java} -version failed ({error}): {hint}") from None
    version = banner.split('"')[1] if banner.count('"') >= 2 else ""
    if _major(version) < min_major:
        raise ConfigError(f"Spark needs Java {min_major}+, found {version or 'an unknown version'} at {java}: {hint}")
    return version
