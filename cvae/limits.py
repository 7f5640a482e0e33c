"""Upper bounds on every count a user gives, checked before TensorFlow loads.

A count past its bound could only end in an out-of-memory crash or a run of days, so the command
lines and the configs refuse it at once with a message that names the bound (docs/bad-input.md).
The bounds are ten to a hundred times the defaults. Standard library only: `cvae.config` and the
argument checks of `pipelines.*` read them before anything heavy is imported.
"""

# Fashion-MNIST's splits: no batch, --limit or validation split can hold more than the training
# split, and no evaluation can use more test images than there are.
TRAIN_IMAGES = 60_000
TEST_IMAGES = 10_000
# Images in a folder of one's own (`cvae.data.folder`): its catalogue is held in memory.
MAX_CATALOGUE_IMAGES = 5_000_000

# Generation (`pipelines.generate`, `pipelines.client`).
# Images one `pipelines.generate` writes. Without --out, the --npy file is written as they are
# made, GENERATE_BATCH at a time, so memory stays at one batch whatever --num (the file itself
# is 3,136 bytes an image: 314 MB at the bound).
MAX_IMAGES = 100_000
GENERATE_BATCH = 1_000  # images per call into the SavedModel: 3 MB of float32
# Images in one PNG grid (--num with --out, and --columns): all are held for the grid, 31 MB of
# float32 at the bound, and a 100 x 100 grid is already 3,002 px wide.
MAX_GRID_IMAGES = 10_000
# --num of `pipelines.client`: one request, whose answer (3.2 MB of float32 at the bound) stays
# under gRPC's default 4 MB message limit.
MAX_REQUEST_IMAGES = 1_000
# Images of one request on the demo page (`pipelines.demo`): a grid of at most 10 x 10 fits a
# browser window; `pipelines.generate` writes more.
MAX_DEMO_IMAGES = 100

# Training (config fields, `pipelines.train`, `pipelines.benchmark`, `pipelines.train_classifier`).
MAX_EPOCHS = 10_000
MAX_STEPS = 10_000_000  # steps_per_execution, kl_warmup_steps
MAX_LOGICAL_CPUS = 64
MAX_LATENT_DIM = 512  # the sampler holds 10 classes x K components x a d x d Cholesky factor
MAX_LAYER_WIDTH = 4_096  # units of a dense layer, filters of a convolution
MAX_LAYERS = 16  # dense layers of the decoder (decoder_hidden); residual blocks a resolution
MAX_SAMPLING_COMPONENTS = 100  # Gaussians per class; a class has about 5,500 training images
# Gradient steps on a code: inpaint_refine_steps, denoise_refine_steps, reconstruct_refine_steps.
MAX_REFINE_STEPS = 1_000

# Evaluation (`pipelines.evaluate`).
MAX_IWAE_K = 10_000  # importance samples per test image (--iwae-k, --compare-k)
MAX_SAMPLES_PER_CLASS = 10_000

# The benchmark (`pipelines.benchmark`), beside the training bounds above.
MAX_BENCHMARK_IMAGES = 10_000_000  # --timed-images, --pipeline-images (defaults 12,800, 256,000)
MAX_BENCHMARK_CALLS = 10_000  # --warmup-steps, --latency-calls, --throughput-calls
