FROM python:3.11-slim
WORKDIR /app
COPY . .
# editable: the migrations are read from the source tree beside the packages
RUN pip install --no-cache-dir -e . && useradd --create-home upah && mkdir /data && chown upah /data
USER upah
EXPOSE 8000 8100
