# One RUN.yaml per run (rewritten when the sweep, the run's checkpoint or its tokenizer changes), then
# one job per group of a run's shards (sampling.shards_per_job): it writes each shard (npz + manifest)
# atomically, keeps the shards an earlier attempt finished, and ends with the group's record, its one
# declared output (a rule declares a fixed set of files). The sample rule has no input function: it is
# the DAG's most numerous job. A text-conditioned run's shards are exported in the GenEval and DPG-Bench
# folder layouts, which their scorers read.


rule run_config:
    input:
        lambda wc: run_files(wc.run),
    output:
        layout.run_config(RESULTS, "{run}"),
    log:
        layout.log(RESULTS, "run_config", "{run}"),
    params:
        json=lambda wc: json.dumps(RUNS[wc.run].config.to_dict(), sort_keys=True),
    localrule: True
    conda:
        "../envs/sample.yaml"
    shell:
        "softcfg run-config --json {params.json:q} --out {output:q} > {log:q} 2>&1"


rule sample:
    input:
        layout.run_config(RESULTS, "{run}"),
    output:
        layout.shard_group(RESULTS, "{run}", "{first}", "{last}"),
    log:
        layout.log(RESULTS, "sample", "{run}", layout.group_name("{first}", "{last}")),
    benchmark:
        layout.benchmark(RESULTS, "sample", "{run}", layout.group_name("{first}", "{last}"))
    threads: stage_threads("sample")
    resources:
        **stage_resources("sample", per_group=True),
    conda:
        "../envs/sample.yaml"
    shell:
        "softcfg sample --config {input:q} --shards {wildcards.first}-{wildcards.last} --out {output:q}"
        " --threads {threads} --no-progress > {log:q} 2>&1"


rule summarize_shards:
    input:
        lambda wc: group_records(wc.run),
    output:
        layout.run_summary(RESULTS, "{run}"),
    log:
        layout.log(RESULTS, "summarize", "{run}"),
    localrule: True
    conda:
        "../envs/report.yaml"
    shell:
        "softcfg summarize --out {output:q} {input:q} > {log:q} 2>&1"


rule export_images:
    input:
        lambda wc: group_records(wc.run),
    output:
        directory(export_folder("{run}", "{layout}")),
    log:
        layout.log(RESULTS, "export", "{run}", "{layout}"),
    localrule: True
    conda:
        "../envs/report.yaml"
    shell:
        "softcfg export --layout {wildcards.layout} --out {output:q} {input:q} > {log:q} 2>&1"
