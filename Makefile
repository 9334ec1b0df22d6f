# DB-Forge: build, run, test and benchmark.
#
#   make up      build binaries and images, start the stack (Traefik + gateway)
#   make test    unit and integration tests against the local Docker daemon
#   make bench   load-test a gateway and the baselines, write bench-results/
#   make down | logs | run | images | clean

SHELL := /bin/bash
TARGET        := x86_64-unknown-linux-gnu
STATIC_ENV    := RUSTFLAGS='-C target-feature=+crt-static' LIBSQLITE3_FLAGS='-DSQLITE_OMIT_LOAD_EXTENSION'
STATIC_DIR    := target/$(TARGET)/release
CONTEXT_DIR   := target/image-context
WORKER_IMAGE  ?= db-worker-base:latest
GATEWAY_IMAGE ?= db-gateway:latest
TRAEFIK_IMAGE ?= traefik:v3.3
GATEWAY_PORT  ?= 8080
COMPOSE_PROJECT ?= dbforge
# `docker compose` (plugin) where it exists, else the standalone `docker-compose`.
COMPOSE := $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
COMPOSE_ENV := WORKER_IMAGE=$(WORKER_IMAGE) GATEWAY_IMAGE=$(GATEWAY_IMAGE) TRAEFIK_IMAGE=$(TRAEFIK_IMAGE) GATEWAY_PORT=$(GATEWAY_PORT)

.PHONY: all static images worker-image gateway-image up down logs run test bench clean

all: images

## Static binaries for the FROM-scratch images (glibc, crt-static).
static:
	$(STATIC_ENV) cargo build --release --locked --target $(TARGET) -p dbforge-worker -p dbforge-gateway

# Each build gets its own context directory, so concurrent builds (two test
# runs at once) never see each other's half-copied binaries.
worker-image: static
	@mkdir -p $(CONTEXT_DIR); ctx=$$(mktemp -d $(CONTEXT_DIR)/worker.XXXXXX); \
	mkdir $$ctx/data && cp $(STATIC_DIR)/dbforge-worker $$ctx/ && \
	docker build -q -t $(WORKER_IMAGE) -f images/worker/Dockerfile $$ctx; \
	status=$$?; rm -rf $$ctx; exit $$status

gateway-image: static
	@mkdir -p $(CONTEXT_DIR); ctx=$$(mktemp -d $(CONTEXT_DIR)/gateway.XXXXXX); \
	cp $(STATIC_DIR)/dbforge-gateway $$ctx/ && \
	docker build -q -t $(GATEWAY_IMAGE) -f images/gateway/Dockerfile $$ctx; \
	status=$$?; rm -rf $$ctx; exit $$status

images: worker-image gateway-image

## Start the stack. Traefik fronts the gateway at http://db.localhost when its
## image is available; otherwise the gateway alone is published on GATEWAY_PORT.
up: images
	@if docker image inspect $(TRAEFIK_IMAGE) >/dev/null 2>&1 || docker pull -q $(TRAEFIK_IMAGE) >/dev/null 2>&1; then \
		$(COMPOSE_ENV) $(COMPOSE) -p $(COMPOSE_PROJECT) -f compose.yaml up -d; \
		echo "DB-Forge is up behind Traefik: http://db.localhost (gateway also on http://127.0.0.1:$(GATEWAY_PORT))"; \
	else \
		echo "NOTE: the Traefik image $(TRAEFIK_IMAGE) cannot be had here (no registry reachable)."; \
		echo "      Starting the gateway alone, published on http://127.0.0.1:$(GATEWAY_PORT)."; \
		$(COMPOSE_ENV) $(COMPOSE) -p $(COMPOSE_PROJECT) -f compose.yaml up -d --no-deps gateway; \
	fi
	@for i in $$(seq 1 50); do curl -fsS http://127.0.0.1:$(GATEWAY_PORT)/health >/dev/null 2>&1 && break; sleep 0.2; done
	@curl -fsS http://127.0.0.1:$(GATEWAY_PORT)/ && echo

down:
	$(COMPOSE_ENV) $(COMPOSE) -p $(COMPOSE_PROJECT) -f compose.yaml down

logs:
	$(COMPOSE_ENV) $(COMPOSE) -p $(COMPOSE_PROJECT) -f compose.yaml logs -f

## The gateway in the foreground on the host, against the local Docker daemon.
run: worker-image
	DBFORGE_WORKER_IMAGE=$(WORKER_IMAGE) cargo run --release -p dbforge-gateway

## Tests. Everything the tests create carries the label dbforge.test-run=$RUN,
## swept afterwards whatever the outcome, so two runs never collide.
test: TEST_TAG := test-$(shell date +%s)-$(shell echo $$$$)
test:
	@set -u; run=$(TEST_TAG); image=db-worker-base:$$run; \
	$(MAKE) --no-print-directory worker-image WORKER_IMAGE=$$image >/dev/null || exit 1; \
	log=target/$$run.log; \
	DBFORGE_TEST_RUN=$$run DBFORGE_WORKER_IMAGE=$$image DBFORGE_WORKER_BIN=$(STATIC_DIR)/dbforge-worker \
		cargo test --locked --workspace --no-fail-fast -- --test-threads=4 2>&1 | tee $$log; \
	status=$${PIPESTATUS[0]}; \
	scripts/sweep.sh "$$run"; docker rmi -f $$image >/dev/null 2>&1; \
	awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f }' $$log; \
	rm -f $$log; exit $$status

bench: images
	scripts/bench.sh

## Remove DB-Forge's own objects: the stack, every labelled container and
## volume, and the images it built. Nothing else.
clean:
	-$(COMPOSE_ENV) $(COMPOSE) -p $(COMPOSE_PROJECT) -f compose.yaml down --remove-orphans
	scripts/sweep.sh all
	-docker rmi -f $(WORKER_IMAGE) $(GATEWAY_IMAGE) >/dev/null 2>&1
	-docker image prune -f --filter label=org.opencontainers.image.title=db-worker-base >/dev/null
	-docker image prune -f --filter label=org.opencontainers.image.title=db-gateway >/dev/null
	rm -rf $(CONTEXT_DIR)
