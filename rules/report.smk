# Tables and figures from the Parquet tables only (sample grids and the images beside the confidence
# heatmaps read one shard per method; the prompt_samples figure every shard of a text run at the focus).


rule tables:
    input:
        layout.metrics_table(RESULTS),
    output:
        md=[
            report(
                layout.table(RESULTS, t, "md"),
                caption=f"../workflow/report/table_{t}.rst",
                category="Tables",
            )
            for t in SWEEP.config.tables
        ],
        tex=[layout.table(RESULTS, t, "tex") for t in SWEEP.config.tables],
    log:
        layout.log(RESULTS, "tables"),
    params:
        names=" ".join(SWEEP.config.tables),
        gamma=FOCUS_GAMMA,
        k=FOCUS_K,
        out_dir=RESULTS / "tables",
    localrule: True
    conda:
        "../envs/report.yaml"
    shell:
        "softcfg tables --metrics {input:q} --gamma {params.gamma} --k {params.k}"
        " --out-dir {params.out_dir:q} {params.names} > {log:q} 2>&1"


rule figures:
    input:
        metrics=layout.metrics_table(RESULTS),
        steps=layout.steps_table(RESULTS),
        confidence=layout.confidence_table(RESULTS),
        timing=layout.timing_table(RESULTS),
        groups=[group_records(run)[0] for run in focus_runs(SCORED).values()],  # the grids show shard 0
        text=[record for run in focus_runs(TEXT).values() for record in group_records(run)],  # all prompts
    output:
        png=[
            report(
                layout.figure(RESULTS, f, "png"),
                caption=f"../workflow/report/figure_{f}.rst",
                category="Figures",
            )
            for f in SWEEP.config.figures
        ],
        pdf=[layout.figure(RESULTS, f, "pdf") for f in SWEEP.config.figures],
    log:
        layout.log(RESULTS, "figures"),
    params:
        names=" ".join(SWEEP.config.figures),
        gamma=FOCUS_GAMMA,
        k=FOCUS_K,
        out_dir=RESULTS / "figures",
        grid=" ".join(
            shlex.quote(f"{model}/{method}={layout.shard(RESULTS, run, 0)}")
            for (model, method), run in focus_runs(SCORED).items()
        ),
        prompts=" ".join(map(shlex.quote, prompt_shards())),
        chosen=(
            "--prompts " + " ".join(map(str, SWEEP.config.figure_options.prompt_samples.prompts))
            if SWEEP.config.figure_options.prompt_samples.prompts
            else ""
        ),
    localrule: True
    conda:
        "../envs/report.yaml"
    shell:
        "softcfg figures --metrics {input.metrics:q} --steps {input.steps:q} --timing {input.timing:q}"
        " --confidence {input.confidence:q}"
        " --gamma {params.gamma}"
        " --k {params.k} --out-dir {params.out_dir:q} --sample-shards {params.grid}"
        " --prompt-shards {params.prompts} {params.chosen} -- {params.names}"
        " > {log:q} 2>&1"
