# One RUN.yaml per run (rewritten when the sweep or the run's checkpoint changes), then one job per
# (run, shard). The sample rule has no input function: it is the DAG's most numerous job.


rule run_config:
    input:
        checkpoint=lambda wc: RUNS[wc.run].config.model.checkpoint,
    output:
        layout.run_config(RESULTS, "{run}"),
    log:
        LOGS / "run_config" / "{run}.log",
    params:
        json=lambda wc: json.dumps(RUNS[wc.run].config.to_dict(), sort_keys=True),
    localrule: True
    conda:
        "../envs/sample.yaml"
    shell:
        "softcfg run-config --json {params.json:q} --out {output} > {log} 2>&1"


rule sample:
    input:
        layout.run_config(RESULTS, "{run}"),
    output:
        npz=RESULTS / "samples" / "{run}" / "shard_{shard}.npz",
        manifest=RESULTS / "samples" / "{run}" / "shard_{shard}.json",
    log:
        LOGS / "sample" / "{run}" / "shard_{shard}.log",
    benchmark:
        RESULTS / "benchmarks" / "sample" / "{run}" / "shard_{shard}.tsv"
    threads: SWEEP.resources["sample"]["cpus"]
    resources:
        **stage_resources("sample"),
    conda:
        "../envs/sample.yaml"
    shell:
        "softcfg sample --config {input} --shard {wildcards.shard} --out {output.npz}"
        " --threads {threads} --no-progress > {log} 2>&1"


rule summarize_shards:
    input:
        lambda wc: shard_files(wc.run, ".json"),
    output:
        layout.run_summary(RESULTS, "{run}"),
    log:
        LOGS / "summarize" / "{run}.log",
    localrule: True
    conda:
        "../envs/report.yaml"
    shell:
        "softcfg summarize --out {output} {input} > {log} 2>&1"
