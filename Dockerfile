# Hugging Face Space (Docker SDK): the whole app in one process, embedded queue, port 7860.
FROM python:3.11-slim

RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

COPY --chown=user . .
RUN pip install --no-cache-dir --upgrade pip \
 && pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir .

USER user
ENV BIASLAB_HOST=0.0.0.0 BIASLAB_PORT=7860 PYTHONUNBUFFERED=1 \
    BIASLAB_ASSETS_DIR=/home/user/app/frontend_assets
EXPOSE 7860
CMD ["biaslab", "serve", "--host", "0.0.0.0", "--port", "7860"]
