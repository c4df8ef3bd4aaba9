# Two feature extractors, one metric suite. The digits model: the classifier as a torch-fidelity
# extractor, features per run. Every other family: ADM's Inception, features per sample job's group of
# shards (fan-out), merged exactly by the metrics job, against an ADM reference batch whose features are
# cached by checksum.


rule reference_images:
    output:
        npz=layout.reference_images(RESULTS),
        manifest=layout.reference_images(RESULTS).with_suffix(".json"),
    log:
        layout.log(RESULTS, "reference", "images"),
    localrule: True
    conda:
        "../envs/evaluate.yaml"
    shell:
        "softcfg reference --out {output.npz:q} > {log:q} 2>&1"


rule reference_features:
    input:
        images=layout.reference_images(RESULTS),
        manifest=layout.reference_images(RESULTS).with_suffix(".json"),
        classifier=layout.classifier_checkpoint(RESULTS),
    output:
        layout.reference_features(RESULTS),
    log:
        layout.log(RESULTS, "reference", "features"),
    benchmark:
        layout.benchmark(RESULTS, "reference", "features")
    threads: stage_threads("features")
    resources:
        **stage_resources("features"),
    conda:
        "../envs/evaluate.yaml"
    shell:
        "softcfg features --classifier {input.classifier:q} --out {output:q} --threads {threads}"
        " {input.images:q} > {log:q} 2>&1"


rule features:
    input:
        shards=lambda wc: group_records(wc.run),
        classifier=layout.classifier_checkpoint(RESULTS),
    output:
        layout.features(RESULTS, "{run}"),
    log:
        layout.log(RESULTS, "features", "{run}"),
    benchmark:
        layout.benchmark(RESULTS, "features", "{run}")
    threads: stage_threads("features")
    resources:
        **stage_resources("features"),
    conda:
        "../envs/evaluate.yaml"
    shell:
        "softcfg features --classifier {input.classifier:q} --out {output:q} --threads {threads}"
        " {input.shards:q} > {log:q} 2>&1"


rule inception_weights:
    input:
        [SWEEP.inception_weights] if SWEEP.inception_weights else [],
    output:
        weights=layout.inception_weights(RESULTS),
        meta=layout.inception_weights(RESULTS).with_suffix(".json"),
    log:
        layout.log(RESULTS, "inception", "weights"),
    params:
        source=f"--source {shlex.quote(str(SWEEP.inception_weights))}" if SWEEP.inception_weights else "",
        head="--require-head" if "is" in SWEEP.metrics else "",
    localrule: True
    conda:
        "../envs/evaluate.yaml"
    shell:
        "softcfg inception-weights {params.source} {params.head} --out {output.weights:q} > {log:q} 2>&1"


rule inception_reference:
    input:
        reference=[SWEEP.reference] if SWEEP.reference else [],
        weights=layout.inception_weights(RESULTS),
    output:
        layout.inception_reference(RESULTS),
    log:
        layout.log(RESULTS, "inception", "reference"),
    benchmark:
        layout.benchmark(RESULTS, "inception", "reference")
    params:
        extraction=EXTRACTION,
    threads: stage_threads("features")
    resources:
        **stage_resources("features"),
    conda:
        "../envs/evaluate.yaml"
    shell:
        "softcfg inception-reference --weights {input.weights:q} --reference {input.reference:q}"
        " --out {output:q} {params.extraction} --threads {threads} > {log:q} 2>&1"


rule inception_features:
    input:
        group=layout.shard_group(RESULTS, "{run}", "{first}", "{last}"),
        weights=layout.inception_weights(RESULTS),
    output:
        layout.inception_features(RESULTS, "{run}", "{first}", "{last}"),
    log:
        layout.log(RESULTS, "features", "{run}", layout.group_name("{first}", "{last}")),
    benchmark:
        layout.benchmark(RESULTS, "features", "{run}", layout.group_name("{first}", "{last}"))
    params:
        extraction=EXTRACTION,
        size=REFERENCE_SIZE,
    threads: stage_threads("features")
    resources:
        **stage_resources("features", per_group=True),
    conda:
        "../envs/evaluate.yaml"
    shell:
        "softcfg inception-features --weights {input.weights:q} --shards {input.group:q} --out {output:q}"
        " --image-size {params.size} {params.extraction} --threads {threads} > {log:q} 2>&1"


rule metrics:
    input:
        config=layout.run_config(RESULTS, "{run}"),
        samples=lambda wc: metric_inputs(wc.run)[0],
        reference=lambda wc: metric_inputs(wc.run)[1],
    output:
        layout.metrics(RESULTS, "{run}"),
    wildcard_constraints:
        run=alternatives_pattern(SCORED),  # text runs: rule t2i_metrics
    log:
        layout.log(RESULTS, "metrics", "{run}"),
    benchmark:
        layout.benchmark(RESULTS, "metrics", "{run}")
    params:
        names=" ".join(SWEEP.metrics),
        kid=SWEEP.kid_subset_size,
        pr=f"--device {METRICS_CONFIG.device} --pr-mode {METRICS_CONFIG.pr_mode}",
        bootstrap=" ".join(f"--bootstrap-{k} {v}" for k, v in METRICS_CONFIG.bootstrap.model_dump().items()),
    threads: stage_threads("metrics")
    resources:
        **stage_resources("metrics"),
    conda:
        "../envs/evaluate.yaml"
    shell:
        "softcfg metrics --config {input.config:q} --samples {input.samples:q} --reference {input.reference:q}"
        " --names {params.names} --kid-subset-size {params.kid} {params.pr} {params.bootstrap}"
        " --out {output:q} > {log:q} 2>&1"
