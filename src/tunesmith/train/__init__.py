"""Training stage: SFT and preference training with PEFT adapters or full fine-tuning."""
