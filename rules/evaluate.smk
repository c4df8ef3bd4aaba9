# digits-FID: the classifier as a torch-fidelity extractor; features per run (cached), then metrics.


rule reference_images:
    output:
        npz=layout.reference_images(RESULTS),
        manifest=layout.reference_images(RESULTS).with_suffix(".json"),
    log:
        LOGS / "reference" / "images.log",
    localrule: True
    conda:
        "../envs/evaluate.yaml"
    shell:
        "softcfg reference --out {output.npz} > {log} 2>&1"


rule reference_features:
    input:
        images=layout.reference_images(RESULTS),
        manifest=layout.reference_images(RESULTS).with_suffix(".json"),
        classifier=layout.classifier_checkpoint(RESULTS),
    output:
        layout.reference_features(RESULTS),
    log:
        LOGS / "reference" / "features.log",
    threads: 1
    conda:
        "../envs/evaluate.yaml"
    shell:
        "softcfg features --classifier {input.classifier} --out {output} --threads {threads}"
        " {input.images} > {log} 2>&1"


rule features:
    input:
        shards=lambda wc: shard_files(wc.run),
        manifests=lambda wc: shard_files(wc.run, ".json"),
        classifier=layout.classifier_checkpoint(RESULTS),
    output:
        layout.features(RESULTS, "{run}"),
    log:
        LOGS / "features" / "{run}.log",
    benchmark:
        RESULTS / "benchmarks" / "features" / "{run}.tsv"
    threads: 1
    resources:
        gpus=0,
    conda:
        "../envs/evaluate.yaml"
    shell:
        "softcfg features --classifier {input.classifier} --out {output} --threads {threads}"
        " {input.shards} > {log} 2>&1"


rule metrics:
    input:
        config=layout.run_config(RESULTS, "{run}"),
        samples=layout.features(RESULTS, "{run}"),
        reference=layout.reference_features(RESULTS),
    output:
        layout.metrics(RESULTS, "{run}"),
    log:
        LOGS / "metrics" / "{run}.log",
    params:
        names=" ".join(SWEEP.metrics),
        kid=SWEEP.kid_subset_size,
    threads: 1
    conda:
        "../envs/evaluate.yaml"
    shell:
        "softcfg metrics --config {input.config} --samples {input.samples} --reference {input.reference}"
        " --names {params.names} --kid-subset-size {params.kid} --out {output} > {log} 2>&1"
