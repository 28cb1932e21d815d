"""The keys of the ``train:`` section: type, default, bounds and a one-line doc each (checked by
:mod:`nngraph.train_schema`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TASKS = ("auto", "classification", "regression", "language_model", "masked_lm", "diffusion", "vae",
         "node_classification", "graph_classification", "gan", "wgan", "dqn", "ddpg", "latent_diffusion")
BUILTINS = ("digits", "karate", "text", "shakespeare", "copy", "reverse", "parity", "gaussians")
#: tasks that train several networks of a spec's ``networks:`` (nngraph/spec/networks.py): task -> roles
#: (``vae`` trains one graph with a kl output too)
TASK_ROLES = {"gan": ("generator", "discriminator"), "wgan": ("generator", "critic"), "vae": ("encoder", "decoder"),
              "dqn": ("q",), "ddpg": ("actor", "critic"), "latent_diffusion": ("encoder", "decoder", "denoiser")}


@dataclass(frozen=True)
class F:
    """One key of the schema: kind, doc, default and bounds (or a nested section)."""

    kind: str  # int, float, bool, str, enum, section, str_list, float_pair, str_map, num_map, int_or_str, tri
    doc: str
    default: Any = None
    choices: tuple = ()
    min: float | None = None
    max: float | None = None
    nullable: bool = True
    section: dict[str, "F"] = field(default_factory=dict)
    shorthand: str | None = None  # a section given as a scalar sets this key
    optional_section: bool = False  # a section that is off (None) unless written


def _sec(doc: str, fields: dict[str, F], shorthand: str | None = None, optional: bool = False) -> F:
    return F("section", doc, section=fields, shorthand=shorthand, optional_section=optional)


AUGMENT = {
    "flip": F("float", "probability of a horizontal flip", 0.5, min=0.0, max=1.0),
    "crop": F("float_pair", "random resized crop: the kept area's fraction range [lo, hi] (aspect ratio 3/4 to "
              "4/3), resized back to the image size; off when absent", None, min=0.0, max=1.0),
    "rotate": F("float", "rotation by up to this many degrees either way (corners from outside are 0)", 0.0,
                min=0.0, max=180.0),
    "brightness": F("float", "multiply each image by a factor uniform in [1 - b, 1 + b]", 0.0, min=0.0, max=1.0),
    "contrast": F("float", "scale each image about its mean by a factor uniform in [1 - c, 1 + c]", 0.0, min=0.0,
                  max=1.0),
}
DATA = {
    "builtin": F("enum", "a bundled dataset (offline)", None, BUILTINS),
    "path": F("str", "a data file: .npz/.npy, .csv, .parquet, .arrow/.feather, .txt or .jsonl (text), .json "
              "(graphs), an edge list, a folder of images with a subfolder per class, or a Hugging Face dataset folder "
              "written by save_to_disk; relative to the spec"),
    "format": F("enum", "file format (auto: from the suffix; a folder: hf_dataset when save_to_disk wrote it, "
                "else image_folder)", "auto",
                ("auto", "npz", "npy", "csv", "parquet", "arrow", "text", "jsonl", "graph_json", "edgelist",
                 "image_folder", "hf_dataset")),
    "text_key": F("str", "jsonl, hf_dataset: the field (column) holding each document's text", "text"),
    "image_size": F("int", "image_folder: images are resized to this many pixels square", 32, min=1, max=4096),
    "image_mode": F("enum", "image_folder: RGB (3 channels) or L (grayscale, 1 channel)", "RGB", ("RGB", "L")),
    "augment": _sec("images (image_folder; hf_dataset image arrays [C, H, W]): random training-batch augmentation, "
                    "drawn per example from (seed, step): the same seed gives the same batches; evaluation is never "
                    "augmented; a number is the flip probability", AUGMENT, shorthand="flip", optional=True),
    "pack": F("bool", "language models: pack whole documents (blank-line-separated blocks of text, or JSONL "
              "lines) into rows of seq_len tokens with per-token doc_ids and positions fed to the graph inputs "
              "of those names; a document's last token predicts nothing (loss never crosses documents)", False),
    "tokenizer": F("enum", "text: characters or byte-pair encoding (the tokenizers library)", "char", ("char", "bpe")),
    "vocab_size": F("int", "BPE vocabulary size", 512, min=8, max=1_000_000),
    "seq_len": F("int", "tokens per training window (language modeling)", 64, min=2, max=1_000_000),
    "val_fraction": F("float", "fraction held out for validation", 0.1, min=0.0, max=0.9),
    "test_fraction": F("float", "fraction held out for the final test (default: 0.2 for tables, 0 for text)",
                       None, min=0.0, max=0.9),
    "label_column": F("int_or_str", "csv, parquet, arrow, hf_dataset: the label column, by name or index (default: "
                      "the last); the other columns are the features", None),
    "x_key": F("str", "npz: the array holding the features", "x"),
    "y_key": F("str", "npz: the array holding the targets", "y"),
    "normalize": F("bool", "standardize features with the training split's mean and std", False),
    "num_samples": F("int", "synthetic tasks: number of examples", 4000, min=10, max=10_000_000),
    "length": F("int", "synthetic tasks: sequence length", 8, min=1, max=4096),
    "symbols": F("int", "synthetic tasks: alphabet size", 8, min=2, max=65536),
    "labelled_per_class": F("int", "node classification: labelled nodes per class when the data has no train mask",
                            2, min=1, max=1_000_000),
    "split_seed": F("int", "seed of the train/val/test split", 0, min=0),
}
OPTIMIZER = {
    "type": F("enum", "the optimizer", "adamw", ("sgd", "adam", "adamw")),
    "lr": F("float", "peak learning rate", 1e-3, min=0.0, max=100.0),
    "weight_decay": F("float", "decoupled (adamw) or L2 (sgd, adam) weight decay on weights with >= 2 dims "
                      "(default 0.01 for adamw, else 0)", None, min=0.0, max=10.0),
    "l1": F("float", "L1 penalty coefficient added to the loss (weights with >= 2 dims)", 0.0, min=0.0, max=10.0),
    "betas": F("float_pair", "adam/adamw betas", [0.9, 0.999], min=0.0, max=1.0),
    "eps": F("float", "adam/adamw epsilon", 1e-8, min=0.0, max=1.0),
    "momentum": F("float", "sgd momentum", 0.0, min=0.0, max=1.0),
    "nesterov": F("bool", "sgd Nesterov momentum", False),
}
SCHEDULE = {
    "type": F("enum", "the decay after warmup", "constant", ("constant", "cosine", "linear")),
    "warmup": F("int", "linear warmup steps from 0 to lr", 0, min=0),
    "min_lr": F("float", "the learning rate cosine/linear decay ends at", 0.0, min=0.0),
}
LOSS = {
    "label_smoothing": F("float", "cross-entropy label smoothing", 0.0, min=0.0, max=0.99),
    "aux": F("num_map", "auxiliary losses added with weights: graph output or node.output pattern -> weight "
             "(e.g. '*.aux_loss': 0.01)", {}),
    "recon": F("enum", "vae: reconstruction loss", "bce", ("bce", "mse")),
    "beta": F("float", "vae: weight of the kl output", 1.0, min=0.0),
}
LORA = {
    "rank": F("int", "adapter rank r", 8, min=1, max=65536),
    "alpha": F("float", "adapter scale numerator (scale = alpha / rank)", 16.0, min=0.0),
    "dropout": F("float", "dropout on the adapter input", 0.0, min=0.0, max=0.99),
    "targets": F("str_list", "linear layers to adapt, by name pattern (fnmatch, e.g. 'h.*.attn.*')", ["*"]),
    "merge": F("bool", "merge adapters into the weights of the exported model", True),
}
EVAL = {
    "every": F("int", "evaluate every N steps (default: about 10 times per run)", None, min=1),
    "batches": F("int", "at most N validation batches per evaluation (default: all)", None, min=1),
    "metric": F("enum", "metric for the best checkpoint and early stopping", "auto",
                ("auto", "loss", "accuracy", "perplexity", "mse")),
}
EARLY = {
    "patience": F("int", "stop after N evaluations without improvement", 5, min=1),
    "min_delta": F("float", "smallest change that counts as an improvement", 0.0, min=0.0),
}
CHECKPOINT = {
    "every": F("int", "save a resumable checkpoint every N steps (default: at every evaluation)", None, min=1),
    "keep": F("int", "keep the last N step checkpoints", 2, min=1, max=1000),
    "every_minutes": F("float", "also save a resumable checkpoint after any step that ends N minutes or more after the "
                       "last one (long runs lose at most N minutes to a crash or preemption)", None, min=0.001),
}
LOG = {
    "every": F("int", "log loss, lr and throughput every N steps", 10, min=1),
    "tensorboard": F("tri", "TensorBoard scalars under OUT/tb (auto: when tensorboard is installed)", "auto"),
    "mlflow": F("bool", "MLflow tracking (the mlflow extra): params (spec vars, train section), metrics per step, "
                "artifacts (loss.png, model, spec) in a local file store under OUT/mlruns unless mlflow_uri", False),
    "mlflow_uri": F("str", "MLflow tracking URI (e.g. http://host:5000 or sqlite:///mlflow.db; default: "
                    "file store OUT/mlruns)", None),
    "wandb": F("bool", "Weights & Biases tracking (the wandb extra): the same params, metrics and artifacts as mlflow, "
               "in OUT/wandb", False),
    "wandb_mode": F("enum", "offline: run files under OUT/wandb only (`wandb sync` uploads them later); online: "
                    "to the W&B server now", "offline", ("offline", "online")),
    "plot": F("tri", "loss-curve PNG at the end (auto: when matplotlib is installed)", "auto"),
    "progress": F("tri", "progress display (auto: a live bar on a terminal, else a plain line every log.every steps "
                  "on stdout: step, loss, lr, throughput, ETA)", "auto"),
}
DIFFUSION = {
    "steps": F("int", "diffusion steps T", 1000, min=1, max=100_000),
    "schedule": F("enum", "beta schedule", "linear", ("linear", "cosine")),
    "beta_start": F("float", "beta_1 (linear)", 1e-4, min=0.0, max=1.0),
    "beta_end": F("float", "beta_T (linear)", 0.02, min=0.0, max=1.0),
    "cosine_s": F("float", "offset s (cosine)", 0.008, min=0.0),
    "cond_drop": F("float", "probability of replacing a label by the null label (classifier-free guidance)", 0.1,
                   min=0.0, max=1.0),
}
MLM = {
    "mask_prob": F("float", "fraction of tokens to predict", 0.15, min=0.0, max=1.0),
    "mask_token": F("int", "id of [MASK] (default: the data's vocabulary size)", None, min=0),
}
GAN = {
    "d_steps": F("int", "discriminator (critic) steps per generator step (default: 1 for gan, 5 for wgan)", None,
                 min=1, max=1000),
    "d_lr": F("float", "discriminator (critic) learning rate (default: optimizer.lr)", None, min=0.0, max=100.0),
    "gp": F("float", "wgan: gradient-penalty weight lambda (0: off)", 10.0, min=0.0),
    "clip": F("float", "wgan: clip critic weights to [-clip, clip] after each step (0: off)", 0.0, min=0.0),
    "modes": F("int", "data gaussians: mixture components on a ring", 8, min=1, max=1000),
    "radius": F("float", "data gaussians: ring radius", 2.0, min=0.0),
    "std": F("float", "data gaussians: component standard deviation", 0.02, min=0.0),
    "samples": F("int", "generated samples scored at each evaluation", 2000, min=10, max=10_000_000),
    "rescale": F("bool", "image data: map the data's [0, 1] values to [-1, 1] (a tanh generator's range)", False),
}
LATENT = {
    "vae_steps": F("int", "latent_diffusion: steps of the first stage (the VAE on the negative ELBO) before the "
                   "denoiser trains on the frozen VAE's latents (default: half of steps)", None, min=1),
    "scale": F("float", "latent_diffusion: latents are mu * scale (default: 1 / the std of mu over the training "
               "data, measured when the VAE stage ends; Rombach et al.'s scale factor)", None, min=0.0),
    "sample_steps": F("int", "latent_diffusion: DDIM steps when sampling at evaluation", 20, min=1, max=100_000),
}
RL = {
    "env": F("str", "a Gymnasium environment id (classic control: CartPole-v1, Pendulum-v1, ...)", None),
    "gamma": F("float", "discount", 0.99, min=0.0, max=1.0),
    "buffer": F("int", "replay buffer capacity (transitions)", 50_000, min=1, max=100_000_000),
    "warmup": F("int", "environment steps with random actions before learning starts", 1000, min=0),
    "train_every": F("int", "environment steps per gradient update", 1, min=1),
    "epsilon_start": F("float", "dqn: initial exploration rate", 1.0, min=0.0, max=1.0),
    "epsilon_end": F("float", "dqn: final exploration rate", 0.05, min=0.0, max=1.0),
    "epsilon_decay": F("int", "dqn: steps of linear epsilon decay", 10_000, min=1),
    "target_every": F("int", "dqn: copy the q-network into the target network every N updates", 500, min=1),
    "double": F("bool", "dqn: double DQN targets (online argmax, target value)", False),
    "tau": F("float", "ddpg: soft target update rate", 0.005, min=0.0, max=1.0),
    "noise": F("enum", "ddpg: exploration noise", "gaussian", ("gaussian", "ou")),
    "noise_std": F("float", "ddpg: exploration noise scale (fraction of the action range)", 0.1, min=0.0),
    "actor_lr": F("float", "ddpg: actor learning rate (default: optimizer.lr)", None, min=0.0, max=100.0),
    "eval_episodes": F("int", "greedy episodes per evaluation", 10, min=1, max=100_000),
}
SCALER = {
    "init_scale": F("float", "the loss scale S at the start", 65536.0, min=1.0, max=2.0 ** 64),
    "growth_interval": F("int", "S doubles after this many steps without an inf/NaN gradient (one halves it "
                         "and skips the update)", 2000, min=1, max=1_000_000_000),
}
DISTRIBUTED = {
    "strategy": F("enum", "multi-process data parallel: ddp (every process holds the whole model; gradients "
                  "all-reduced) or fsdp (parameters, gradients and optimizer state sharded across processes; "
                  "checkpoints hold the full state)", "ddp", ("ddp", "fsdp")),
    "tp": F("int", "tensor parallelism: each attention's heads, each FFN's hidden features and the vocabulary split "
            "over this many processes (the plan derived from the graph; a layer it cannot split stays whole on "
            "each); the processes form a dp × tp mesh, tp consecutive ranks per group", 1, min=1, max=4096,
            nullable=False),
    "dp": F("int", "with tp > 1: data-parallel groups, sharded with FSDP2 (default: processes / tp)", None, min=1,
            max=1_000_000),
}
SCHEMA: dict[str, F] = {
    "task": F("enum", "what to learn (auto: from the graph's inputs and outputs)", "auto", TASKS),
    "data": _sec("the dataset", DATA, shorthand="builtin"),
    "inputs": F("str_map", "graph input -> data field (default: by name, x, tokens)", {}),
    "output": F("str", "the graph output the loss reads (default: logits, else the first)"),
    "batch_size": F("int", "examples per step and process", 32, min=1, max=10_000_000),
    "eval_batch_size": F("int", "examples per evaluation batch (default: batch_size)", None, min=1),
    "steps": F("int", "optimizer steps", None, min=1),
    "epochs": F("int", "passes over the training split (instead of steps)", None, min=1),
    "optimizer": _sec("optimizer", OPTIMIZER, shorthand="type"),
    "schedule": _sec("learning-rate schedule", SCHEDULE, shorthand="type"),
    "grad_clip": F("float", "clip the global gradient norm to this (0: off)", 0.0, min=0.0),
    "grad_accum": F("int", "micro-batches accumulated per optimizer step", 1, min=1, max=100_000),
    "precision": F("enum", "fp32, or autocast to bf16 / fp16 (fp16 with a gradient scaler, on the CPU or CUDA); "
                   "under FSDP bf16 also gathers bf16 parameters and reduce-scatters fp32 gradients", "fp32",
                   ("fp32", "bf16", "fp16")),
    "device": F("enum", "where to train", "auto", ("auto", "cpu", "cuda")),
    "seed": F("int", "seed of initialization, batches, dropout and noise", 0, min=0),
    "threads": F("int", "CPU threads for torch's kernels (default: torch's choice; 1 avoids oversubscription "
                 "when the machine is busy)", None, min=1, max=4096),
    "activation_checkpointing": F("bool_or_names", "recompute blocks' activations in the backward pass instead of "
                                  "keeping them (less memory, one more forward per block): true for every block use "
                                  "compiled to a module, or a list of block names", False),
    "compile": F("bool", "regional torch.compile: each block class's forward compiled once (fullgraph; inductor "
                 "with its C++ wrapper) and reused by its copies; a block that cannot be captured whole (MoE "
                 "routing) runs eagerly, with a warning naming it", False),
    "compile_backend": F("enum", "train.compile's torch.compile backend: inductor (generated kernels), aot_eager "
                         "(the captured forward and backward graphs run by eager kernels: quick to compile, for "
                         "checking capture) or eager (capture only)", "inductor", ("inductor", "aot_eager", "eager")),
    "scaler": _sec("precision fp16: the gradient scaler", SCALER),
    "distributed": _sec("data and tensor parallel on several processes (--nproc-per-node, torchrun)", DISTRIBUTED,
                        shorthand="strategy"),
    "loss": _sec("loss options", LOSS),
    "lora": _sec("train low-rank adapters on linear layers instead of all weights", LORA, optional=True),
    "tbptt": F("int", "recurrent language models: truncated-BPTT window on contiguous streams, state carried", None,
               min=1),
    "state": F("str_map", "recurrent state carried between windows: input -> output (default: h0->h, c0->c)", None),
    "eval": _sec("evaluation", EVAL),
    "early_stopping": _sec("stop when the eval metric stops improving", EARLY, optional=True),
    "checkpoint": _sec("checkpoints", CHECKPOINT),
    "log": _sec("logging", LOG),
    "diffusion": _sec("diffusion task", DIFFUSION),
    "mlm": _sec("masked-LM task", MLM),
    "networks": F("str_map", "task role -> network of the spec's networks: (default: the role's name, "
                  "e.g. generator, discriminator)", {}),
    "gan": _sec("gan / wgan tasks", GAN),
    "rl": _sec("dqn / ddpg tasks (Gymnasium environments)", RL),
    "latent": _sec("latent_diffusion task (the diffusion section sets T, the schedule and cond_drop)", LATENT),
}
