# Every run's metrics and shard summary into results/metrics.parquet and results/steps.parquet, and its
# sample jobs' benchmark files into results/timing.parquet.


rule aggregate:
    input:
        metrics=[layout.metrics(RESULTS, run) for run in RUNS],
        summaries=[layout.run_summary(RESULTS, run) for run in RUNS],
    output:
        metrics=layout.metrics_table(RESULTS),
        steps=layout.steps_table(RESULTS),
        timing=layout.timing_table(RESULTS),
    log:
        layout.log(RESULTS, "aggregate"),
    benchmark:
        layout.benchmark(RESULTS, "aggregate")
    params:
        results=RESULTS,
        runs=" ".join(sorted(RUNS)),
    localrule: True
    conda:
        "../envs/report.yaml"
    shell:
        "softcfg aggregate --results {params.results} --metrics-out {output.metrics}"
        " --steps-out {output.steps} --timing-out {output.timing} {params.runs} > {log} 2>&1"
