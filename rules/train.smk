# Training of the embedded models: one generator per trained model entry, one classifier for metrics.


rule train_generator:
    output:
        layout.generator_checkpoint(RESULTS, "{model}"),
    log:
        layout.log(RESULTS, "train", "{model}"),
    benchmark:
        layout.benchmark(RESULTS, "train", "{model}")
    params:
        seed=lambda wc: SWEEP.trained_models[wc.model],
        family=lambda wc: SWEEP.config.models[wc.model].family,
    threads: stage_threads("train")
    resources:
        **stage_resources("train"),
    conda:
        "../envs/train.yaml"
    shell:
        "softcfg train --generator {output:q} --family {params.family} --seed {params.seed} "
        "--threads {threads} > {log:q} 2>&1"


rule train_classifier:
    output:
        layout.classifier_checkpoint(RESULTS),
    log:
        layout.log(RESULTS, "train", "classifier"),
    benchmark:
        layout.benchmark(RESULTS, "train", "classifier")
    threads: stage_threads("train")
    resources:
        **stage_resources("train"),
    conda:
        "../envs/train.yaml"
    shell:
        "softcfg train --classifier {output:q} --seed 0 --threads {threads} > {log:q} 2>&1"
