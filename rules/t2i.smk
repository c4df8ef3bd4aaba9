# Text-to-image runs: their GenEval export scored by the family's detector, their DPG-Bench grids by its
# VQA against a question table (the embedded scene model's generated from its prompt set), both rows
# joined into the run's metrics record, which rule aggregate reads like any other run's. Which benchmark,
# backend, options and mode: softcfg.metrics.t2i_scoring (T2I in rules/common.smk). The scorers check
# the whole export first (every prompt, the same number of images each) and refuse a partial set by name.


rule dpg_questions:
    input:
        lambda wc: SWEEP.config.models[wc.text_model].prompts,
    output:
        layout.dpg_questions(RESULTS, "{text_model}"),
    log:
        layout.log(RESULTS, "t2i", "questions", "{text_model}"),
    wildcard_constraints:
        text_model=alternatives_pattern({RUNS[run].model for run in scored_on("dpg")}),
    localrule: True
    conda:
        "../envs/evaluate.yaml"
    shell:
        "softcfg dpg-questions {input:q} --out {output:q} > {log:q} 2>&1"


rule geneval_scores:
    input:
        lambda wc: scorer_inputs(wc.run, "geneval"),
    output:
        layout.t2i_rows(RESULTS, "geneval", "{run}"),
    log:
        layout.log(RESULTS, "t2i", "geneval", "{run}"),
    benchmark:
        layout.benchmark(RESULTS, "t2i", "geneval", "{run}")
    wildcard_constraints:
        run=alternatives_pattern(scored_on("geneval")),
    params:
        folder=lambda wc: export_folder(wc.run, "geneval"),
        backend=lambda wc: T2I[wc.run]["geneval"].backend,
        options=lambda wc: T2I[wc.run]["geneval"].option_args(),
        prompts=lambda wc: RUNS[wc.run].config.model.prompts,
        per_prompt=lambda wc: RUNS[wc.run].config.model.per_prompt,
    threads: stage_threads("features")
    resources:
        **stage_resources("features"),
    conda:
        "../envs/evaluate.yaml"
    shell:
        "softcfg geneval {params.folder:q} --backend {params.backend} {params.options}"
        " --prompts {params.prompts:q} --images-per-prompt {params.per_prompt} --threads {threads}"
        " --out {output:q} > {log:q} 2>&1"


rule dpg_scores:
    input:
        scorer=lambda wc: scorer_inputs(wc.run, "dpg"),
        questions=lambda wc: question_table(wc.run),
    output:
        layout.t2i_rows(RESULTS, "dpg", "{run}"),
    log:
        layout.log(RESULTS, "t2i", "dpg", "{run}"),
    benchmark:
        layout.benchmark(RESULTS, "t2i", "dpg", "{run}")
    wildcard_constraints:
        run=alternatives_pattern(scored_on("dpg")),
    params:
        folder=lambda wc: export_folder(wc.run, "dpg"),
        backend=lambda wc: T2I[wc.run]["dpg"].backend,
        options=lambda wc: T2I[wc.run]["dpg"].option_args(),
        custom=lambda wc: "" if T2I[wc.run]["dpg"].questions else "--custom-questions",
        mode=lambda wc: T2I[wc.run]["dpg"].mode,
    threads: stage_threads("features")
    resources:
        **stage_resources("features"),
    conda:
        "../envs/evaluate.yaml"
    shell:
        "softcfg dpg {params.folder:q} --questions {input.questions:q} {params.custom} --mode {params.mode}"
        " --backend {params.backend} {params.options} --threads {threads} --out {output:q} > {log:q} 2>&1"


rule t2i_metrics:
    input:
        config=layout.run_config(RESULTS, "{run}"),
        rows=lambda wc: [layout.t2i_rows(RESULTS, benchmark, wc.run) for benchmark in T2I[wc.run]],
    output:
        layout.metrics(RESULTS, "{run}"),
    log:
        layout.log(RESULTS, "t2i", "record", "{run}"),
    wildcard_constraints:
        run=alternatives_pattern(T2I),
    localrule: True
    conda:
        "../envs/report.yaml"
    shell:
        "softcfg t2i-record --config {input.config:q} --rows {input.rows:q} --out {output:q} > {log:q} 2>&1"
