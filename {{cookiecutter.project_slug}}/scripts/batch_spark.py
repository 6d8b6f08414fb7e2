"""`make batch ENGINE=spark` for `spark-submit`, the launcher of Spark's clusters:

    spark-submit --master yarn scripts/batch_spark.py INPUT OUTPUT [--alias NAME] [--overwrite]

The master and every other Spark setting come from spark-submit (leave SPARK_MASTER unset). The
driver's Python must have this project installed: on this machine,
`uv run --group spark spark-submit ...` puts .venv/bin first on PATH.
"""

import sys

from {{ cookiecutter.package_name }}.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["batch-spark", *sys.argv[1:]]))
