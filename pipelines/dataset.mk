# pipelines/dataset.mk: build a vision-language dataset from a slide archive.
#
#   make -f pipelines/dataset.mk SLIDES='archive/*.svs' OUT=ds \
#        MODEL=uni.safetensors TEXT_MODEL=text.safetensors VOCAB=bpe.txt.gz \
#        REPORTS='file:///data/reports/{slide}.txt' -j 8
#
# Then, for tile-level search: make -f pipelines/dataset.mk ... tiles
#
# For every slide: tiles -> captions -> embeddings -> bags, one file per
# stage under $(OUT)/, each made under a temporary name and renamed only
# when its command succeeded. So `make -j N` builds slides in parallel, an
# interrupted build resumes by running make again (finished files are not
# redone), and a failed slide leaves no partial file behind. Then: training,
# joint embeddings, index, evaluation.
#
# Per-slide targets can be built alone (what pipelines/fanout and the Slurm
# array script do on many machines):  make -f pipelines/dataset.mk OUT=ds ds/bags/SLIDE.mpk
#
# Tile-level search over a large archive is built in shards: once the head
# is trained, each slide's tiles are projected and indexed on their own
# (ds/shards/SLIDE.faiss, fanned out like the bags), and `make tiles`
# merges the shards with eosin-index --merge into ds/tiles.faiss. Flat and
# HNSW shards merge as they are; IVF shards must share one trained index:
# SHARD_FLAGS='--trained ds/trained.faiss' after `make ds/trained.faiss`.

EOSIN_BIN  ?= $(dir $(lastword $(MAKEFILE_LIST)))../build/bin
SLIDES     ?=
OUT        ?= dataset
MODEL      ?=
TEXT_MODEL ?=
VOCAB      ?=
# Where report text comes from: a URL template for eosin-caption-fetch
# (file:// or http(s)://, {slide} is filled in). Empty: no text.
REPORTS    ?=
# Or captions per tile from an OpenAI-compatible VLM endpoint.
VLM        ?=
TILE_FLAGS ?= --mags 5,10,20,40 --px 512 --parents 64 --seed 1
FETCH_FLAGS?=
ENC_FLAGS  ?= --drop-pixels
BAG_FLAGS  ?= --by parent
ALIGN_FLAGS?= --steps 200 --seed 1
INDEX_FLAGS?= --factory Flat --normalize
SHARD_FLAGS?= --factory Flat --normalize
TRAIN_INDEX_FLAGS?= --factory IVF256,Flat --normalize

E := $(EOSIN_BIN)
# Ends a recipe that wrote $@.tmp: rename it to $@, or on failure remove it,
# so that no stage leaves a partial file, not even the temporary one.
KEEP = mv $@.tmp $@ || { rm -f $@.tmp; exit 1; }
slide_id = $(basename $(notdir $(1)))
IDS := $(foreach s,$(SLIDES),$(call slide_id,$(s)))

.PHONY: all slides train index eval shards tiles clean
.DELETE_ON_ERROR:
.SECONDARY:

all: index eval

slides: $(IDS:%=$(OUT)/bags/%.mpk)

# $(call rule,ID,PATH): the per-slide chain for one slide.
define slide_rules
$(OUT)/tiles/$(1).mpk: $(2)
	@mkdir -p $$(@D)
	$(E)/eosin-tile $(TILE_FLAGS) --preview $(OUT)/tiles/$(1).png $$< > $$@.tmp && $$(KEEP)
endef
$(foreach s,$(SLIDES),$(eval $(call slide_rules,$(call slide_id,$(s)),$(s))))

$(OUT)/text/%.mpk: $(OUT)/tiles/%.mpk
	@mkdir -p $(@D)
	$(if $(REPORTS)$(VLM),$(E)/eosin-caption-fetch $(if $(VLM),--vlm $(VLM),--url '$(REPORTS)') $(FETCH_FLAGS) --cache $(OUT)/cache < $< > $@.tmp,cp $< $@.tmp) && $(KEEP)

$(OUT)/emb/%.mpk: $(OUT)/text/%.mpk $(MODEL) $(TEXT_MODEL)
	@mkdir -p $(@D)
	$(E)/eosin-encode --model $(MODEL) $(if $(TEXT_MODEL),--text-model $(TEXT_MODEL) --vocab $(VOCAB)) $(ENC_FLAGS) < $< > $@.tmp && $(KEEP)

$(OUT)/bags/%.mpk: $(OUT)/emb/%.mpk
	@mkdir -p $(@D)
	$(E)/eosin-bag $(BAG_FLAGS) < $< > $@.tmp && $(KEEP)

# Training sees every slide's bags; the head is written atomically by eosin-align.
# A fan-out job (ONE_SLIDE=1, set by pipelines/fanout and slurm-array.sh)
# sees one slide only and so must never train: there the head is an input.
ifeq ($(ONE_SLIDE),)
$(OUT)/head.safetensors: $(IDS:%=$(OUT)/bags/%.mpk)
	cat $^ | $(E)/eosin-align --train --out $@ $(ALIGN_FLAGS) --metrics $(OUT)/train-metrics.jsonl --plot $(OUT)/train.svg
endif

$(OUT)/joint.mpk: $(OUT)/head.safetensors $(IDS:%=$(OUT)/bags/%.mpk)
	cat $(IDS:%=$(OUT)/bags/%.mpk) | $(E)/eosin-align --apply $< > $@.tmp && $(KEEP)

$(OUT)/index.faiss: $(OUT)/joint.mpk
	$(E)/eosin-index --out $@ $(INDEX_FLAGS) < $<

train: $(OUT)/head.safetensors
index: $(OUT)/index.faiss

# Tile-level shards: one slide's tiles in the joint space, indexed alone.
$(OUT)/shards/%.faiss: $(OUT)/emb/%.mpk $(OUT)/head.safetensors
	@mkdir -p $(@D)
	$(E)/eosin-cat --base64 --kind tile $< | $(E)/eosin-cat -r \
	  | $(E)/eosin-align --apply $(OUT)/head.safetensors > $(@:.faiss=.joint.tmp) \
	  && $(E)/eosin-index --out $@ $(SHARD_FLAGS) $(@:.faiss=.joint.tmp) \
	  && rm -f $(@:.faiss=.joint.tmp) || { rm -f $(@:.faiss=.joint.tmp); exit 1; }
shards: $(IDS:%=$(OUT)/shards/%.faiss)

# All shards in one archive, in the order of SLIDES.
$(OUT)/tiles.faiss: $(IDS:%=$(OUT)/shards/%.faiss)
	$(E)/eosin-index --merge --out $@ $^
tiles: $(OUT)/tiles.faiss

# A trained, empty IVF index for shards that need one (see above), trained
# on a sample of the bags' joint embeddings.
$(OUT)/trained.faiss: $(OUT)/joint.mpk
	$(E)/eosin-index --out $@ --train-only $(TRAIN_INDEX_FLAGS) < $<

# Evaluation: retrieval between the image and text sides of the bags.
$(OUT)/eval.json: $(OUT)/joint.mpk
	$(E)/eosin-query --eval-retrieval --metrics $@.tmp < $< > /dev/null && $(KEEP)
eval: $(OUT)/eval.json

clean:
	rm -rf $(OUT)
