"""Fine-tuning the local model: SFT examples from grounded Q&A (:mod:`finetune.dataset`), the
contamination check against the eval gold set (:mod:`finetune.overlap`), LoRA/QLoRA training
(:mod:`finetune.train`), Claude-drafted Q&A (:mod:`finetune.synth`) and the ``mlrag finetune``
command (:mod:`cli.finetune`). Trained adapters land in ``settings.adapters_dir`` and are
served by name by the ``local`` generator (:class:`rag.local_models.AdapterRegistry`)."""
