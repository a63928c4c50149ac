"""The Train page's model-setting fields: one-line help for each, which are shown first, which are fixed by the data."""

# One-line help for model-config and training fields shown on the Train page.
FIELD_HELP = {
    "latent_dim": "size of the latent code: bigger can hold more detail but needs more data",
    "base_channels": "width of the network (feature maps in the first layer): bigger is slower and stronger",
    "beta": "weight of the KL term: higher gives a smoother latent space and blurrier images",
    "class_dim": "size of the learned class embedding",
    "g_channels": "width of the generator network",
    "d_channels": "width of the discriminator network",
    "channel_mults": "width multiplier per UNet level, comma-separated (e.g. 1,2,2: three levels)",
    "blocks_per_level": "residual blocks per UNet level: more is slower and stronger",
    "attention": "self-attention in the UNet's middle block (helps global structure)",
    "dropout": "dropout in residual blocks: regularises training on very small datasets",
    "num_timesteps": "length of the noise schedule T (training timesteps)",
    "schedule": "noise schedule: cosine (recommended for small images) or linear (original DDPM)",
    "x0_clip": "how sampling keeps each predicted clean image in range: dynamic (Imagen's thresholding, rescales an "
    "over-saturated prediction as a whole; best measured) or static (clips each pixel at the range limits)",
    "zero_init": "start every residual block at zero (the ADM recipe for long trainings); measured slower to learn in "
    "the first thousand steps, so off by default",
    "cond_drop": "probability of dropping the class label in training (enables classifier-free guidance)",
    "default_steps": "sampling steps used when none are given",
    "default_guidance": "guidance scale used when none is given (1 = no guidance)",
    "batch_size": "images per optimisation step",
    "lr": "learning rate of the optimiser (the family's default when left at its shown value)",
    "ema_decay": "decay of the exponential moving average of the weights used for sampling",
    # LDM
    "latent_channels": "channels of the autoencoder's latent image that the diffusion model works in",
    "downsample": "how much smaller the latent image is than the picture (2 or 4; 0 = chosen from the image size): bigger is faster and blurrier",
    "ae_channels": "width of the autoencoder network",
    "ae_steps": "training steps spent on the autoencoder before the latent diffusion model starts",
    "ae_lr": "learning rate of the autoencoder phase",
    "kl_weight": "weight of the autoencoder's KL term: keeps the latent close to Gaussian (small, e.g. 1e-6)",
    "recon_loss": "autoencoder reconstruction loss: l1 (sharper) or mse",
    "min_snr_gamma": "Min-SNR weighting of the diffusion loss over timesteps (0 = off; 5 is usual). On in the LDM, where it "
    "learned faster; off in the DDPM, where it gave more precise but less varied samples and a worse FID",
    "latent_clip": "predicted latents are clipped to +- this many standard deviations while sampling (must be > 0)",
    # Flow matching
    "time_sampling": "how training times t are drawn: uniform or logit-normal (more weight to the middle of the path)",
    "logit_mean": "mean of the logit-normal time distribution",
    "logit_std": "spread of the logit-normal time distribution",
    "time_scale": "scale from time t in [0, 1] to the network's time embedding",
    "grid_rho": "spacing of the ODE solver's time grid (1 = even; higher = finer near the image end)",
    "default_sampler": "ODE solver used when none is given: heun (2nd order) or euler",
    # RealNVP / Glow
    "levels": "number of multi-scale levels (each halves the resolution and factors out half the dimensions)",
    "steps_per_level": "flow steps (actnorm + 1x1 conv + coupling) per level: more is stronger and slower",
    "hidden_channels": "width of the coupling networks",
    "blocks_per_coupling": "residual blocks in each coupling network",
    "logit_alpha": "squeeze of pixel values before the logit transform (keeps it finite at 0 and 1)",
    # StyleGAN2
    "z_dim": "size of the input noise vector z",
    "w_dim": "size of the style vector w produced by the mapping network",
    "mapping_layers": "layers of the mapping network z -> w",
    "mapping_lr_mul": "learning-rate multiplier of the mapping network (StyleGAN uses 0.01)",
    "mbstd_group": "minibatch-standard-deviation group size in the discriminator (helps variety; 0 = off)",
    "r1_gamma": "strength of the R1 gradient penalty on real images (stabilises training)",
    "r1_every": "apply R1 every N steps (lazy regularisation)",
    "style_mix_prob": "probability of mixing two styles in training (makes the layers' styles independent)",
    "diffaug": "differentiable augmentations applied to real and fake images for the discriminator (small-data regime)",
    "mean_w_samples": "noise samples averaged to find each class's mean style (the truncation centre)",
}
# Shown first on the Train page; other fields go under "Advanced".
MAIN_FIELDS = (
    "latent_dim", "beta", "base_channels", "g_channels", "d_channels", "default_steps", "default_guidance", "channel_mults",
    "z_dim", "ae_steps", "latent_channels", "downsample", "levels", "steps_per_level", "hidden_channels", "default_sampler",
)  # fmt: skip
FIXED_FIELDS = ("image_size", "channels", "num_classes")
