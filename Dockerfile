# CUDA training box for the generator. PyPI's Linux torch wheels carry their own CUDA libraries, so a
# slim Python base is enough; the host needs an NVIDIA driver and the NVIDIA container toolkit.
FROM python:3.11-slim-bookworm

# ffmpeg decodes m4a/aac audio (everything else goes through soundfile's bundled libsndfile).
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg && rm -rf /var/lib/apt/lists/*

WORKDIR /workspace
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt wandb pyarrow

COPY . .
ENV HF_HUB_OFFLINE=1 OSUT5_CACHE_DIR=/cache
# One process per visible GPU; override the command for other configs (see docker-compose.yml).
CMD ["torchrun", "--standalone", "--nproc_per_node=gpu", "osuT5/train.py", "-cn", "train_v29", "data.root=/data"]
