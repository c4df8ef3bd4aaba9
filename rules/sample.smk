# One RUN.yaml per run (rewritten when the sweep, the run's checkpoint or its tokenizer changes), then
# one job per (run, shard). The sample rule has no input function: it is the DAG's most numerous job.


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
        "softcfg run-config --json {params.json:q} --out {output} > {log} 2>&1"


rule sample:
    input:
        layout.run_config(RESULTS, "{run}"),
    output:
        npz=layout.shard(RESULTS, "{run}", "{shard}"),
        manifest=layout.shard(RESULTS, "{run}", "{shard}").with_suffix(".json"),
    log:
        layout.log(RESULTS, "sample", "{run}", "shard_{shard}"),
    benchmark:
        layout.benchmark(RESULTS, "sample", "{run}", "shard_{shard}")
    threads: stage_threads("sample")
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
        layout.log(RESULTS, "summarize", "{run}"),
    localrule: True
    conda:
        "../envs/report.yaml"
    shell:
        "softcfg summarize --out {output} {input} > {log} 2>&1"
