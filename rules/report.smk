# Tables and figures from the Parquet tables only (sample grids read one shard per method).


rule tables:
    input:
        layout.metrics_table(RESULTS),
    output:
        md=[
            report(
                RESULTS / "tables" / f"{t}.md",
                caption=f"../workflow/report/table_{t}.rst",
                category="Tables",
            )
            for t in SWEEP.tables
        ],
        tex=[RESULTS / "tables" / f"{t}.tex" for t in SWEEP.tables],
    log:
        LOGS / "tables.log",
    params:
        names=" ".join(SWEEP.tables),
    localrule: True
    conda:
        "../envs/report.yaml"
    shell:
        "softcfg tables --metrics {input} --gamma {FOCUS_GAMMA} --k {FOCUS_K}"
        " --out-dir {RESULTS}/tables {params.names} > {log} 2>&1"


rule figures:
    input:
        metrics=layout.metrics_table(RESULTS),
        steps=layout.steps_table(RESULTS),
        shards=[layout.shard(RESULTS, run, 0) for run in focus_runs().values()],
    output:
        png=[
            report(
                RESULTS / "figures" / f"{f}.png",
                caption=f"../workflow/report/figure_{f}.rst",
                category="Figures",
            )
            for f in SWEEP.figures
        ],
        pdf=[RESULTS / "figures" / f"{f}.pdf" for f in SWEEP.figures],
    log:
        LOGS / "figures.log",
    params:
        names=" ".join(SWEEP.figures),
        grid=" ".join(
            f"{model}/{method}={layout.shard(RESULTS, run, 0)}"
            for (model, method), run in focus_runs().items()
        ),
    localrule: True
    conda:
        "../envs/report.yaml"
    shell:
        "softcfg figures --metrics {input.metrics} --steps {input.steps} --gamma {FOCUS_GAMMA} --k {FOCUS_K}"
        " --out-dir {RESULTS}/figures --sample-shards {params.grid} -- {params.names} > {log} 2>&1"
