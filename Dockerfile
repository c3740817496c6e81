# Hugging Face Space (Docker SDK): the whole app in one process, embedded queue, port 7860.
#
#   docker build .                                   CPU image with the ImageNet model set (real photos)
#   docker build --build-arg MODEL_SET= .            the shapes zoo only (no weights downloaded)
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu130 \
#                --build-arg DEVICE=cuda .           GPU image (a Space on GPU hardware; see README)
FROM python:3.11-slim

# Where pip takes torch from: the CPU wheels, or a CUDA index (the CUDA libraries come as wheels too).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# "imagenet": timm's ImageNet-pretrained models beside the shapes zoo; "" for the zoo alone.
ARG MODEL_SET=imagenet
# Where jobs run: cpu, or cuda on GPU hardware (the server refuses to start if CUDA is missing).
ARG DEVICE=cpu

RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

COPY --chown=user . .
RUN pip install --no-cache-dir --upgrade pip \
 && pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1 --index-url ${TORCH_INDEX} \
 && pip install --no-cache-dir .

USER user
ENV HF_HOME=/home/user/.cache/huggingface
# The build is online, the Space at run time is not: the model set's weights go into the image's
# Hugging Face cache now, exactly the models `backend/models/imagenet.py` registers (its one list).
RUN if [ -n "$MODEL_SET" ]; then python -m backend.models.imagenet --download; fi

ENV BIASLAB_HOST=0.0.0.0 BIASLAB_PORT=7860 PYTHONUNBUFFERED=1 \
    BIASLAB_ASSETS_DIR=/home/user/app/frontend_assets \
    BIASLAB_MODEL_SET=${MODEL_SET} BIASLAB_DEVICE=${DEVICE} HF_HUB_OFFLINE=1
EXPOSE 7860
CMD ["biaslab", "serve", "--host", "0.0.0.0", "--port", "7860"]
