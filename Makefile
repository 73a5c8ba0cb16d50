# Developer shortcuts. `make demo` builds samlgate and starts the demo (dev IdP + demo app +
# gateway on loopback; DEVELOPMENT ONLY). `make test` runs the whole suite as CI does.
# `make config-reference` regenerates docs/configuration-reference.md from the config structs
# (tests/config_reference.rs fails until it is regenerated after a key changes).

.PHONY: demo test config-reference

demo:
	scripts/install-deps.sh build && cargo run --release -- demo

test:
	scripts/test.sh

config-reference:
	SAMLGATE_WRITE_CONFIG_REFERENCE=1 cargo test --test config_reference
