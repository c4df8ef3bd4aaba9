# The evaluation workflow: sweep -> shards -> features -> metrics -> Parquet -> tables and figures.
# Reads config.yaml, validates it (rules/common.smk) and includes one rule file per stage.
from snakemake.utils import min_version

min_version("9.0")


if not workflow.overwrite_configfiles:  # `--configfile other.yaml` replaces config.yaml, never merges into it

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/train.smk"
include: "rules/sample.smk"
include: "rules/evaluate.smk"
include: "rules/t2i.smk"
include: "rules/aggregate.smk"
include: "rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True
