# Every scored run's metrics and shard summary into results/metrics.parquet, results/steps.parquet and
# results/confidence.parquet (the recorded samples' per-token confidences),
# and its sample jobs' benchmark files into results/timing.parquet (text-conditioned runs: their GenEval /
# DPG-Bench rows, rules/t2i.smk).


rule aggregate:
    input:
        metrics=[layout.metrics(RESULTS, run) for run in [*SCORED, *T2I]],
        summaries=[layout.run_summary(RESULTS, run) for run in [*SCORED, *T2I]],
    output:
        metrics=layout.metrics_table(RESULTS),
        steps=layout.steps_table(RESULTS),
        confidence=layout.confidence_table(RESULTS),
        timing=layout.timing_table(RESULTS),
    log:
        layout.log(RESULTS, "aggregate"),
    benchmark:
        layout.benchmark(RESULTS, "aggregate")
    params:
        results=RESULTS,
        runs=" ".join(sorted([*SCORED, *T2I])),
    localrule: True
    conda:
        "../envs/report.yaml"
    shell:
        "softcfg aggregate --results {params.results:q} --metrics-out {output.metrics:q}"
        " --steps-out {output.steps:q} --confidence-out {output.confidence:q} --timing-out {output.timing:q}"
        " {params.runs} > {log:q} 2>&1"
