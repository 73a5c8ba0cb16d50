# Developer shortcuts. `make demo` builds samlgate and starts the demo (dev IdP + demo app +
# gateway on loopback; DEVELOPMENT ONLY). `make test` runs the whole suite as CI does.

.PHONY: demo test

demo:
	scripts/install-deps.sh build && cargo run --release -- demo

test:
	scripts/test.sh
