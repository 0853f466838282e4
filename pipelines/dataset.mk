# pipelines/dataset.mk: build a vision-language dataset from a slide archive.
#
#   make -f pipelines/dataset.mk SLIDES='archive/*.svs' OUT=ds \
#        MODEL=uni.safetensors TEXT_MODEL=text.safetensors VOCAB=bpe.txt.gz \
#        REPORTS='file:///data/reports/{slide}.txt' -j 8
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
QUERIES    ?=

E := $(EOSIN_BIN)
slide_id = $(basename $(notdir $(1)))
IDS := $(foreach s,$(SLIDES),$(call slide_id,$(s)))

.PHONY: all slides train index eval clean
.DELETE_ON_ERROR:
.SECONDARY:

all: index eval

slides: $(IDS:%=$(OUT)/bags/%.mpk)

# $(call rule,ID,PATH): the per-slide chain for one slide.
define slide_rules
$(OUT)/tiles/$(1).mpk: $(2)
	@mkdir -p $$(@D)
	$(E)/eosin-tile $(TILE_FLAGS) --preview $(OUT)/tiles/$(1).png $$< > $$@.tmp && mv $$@.tmp $$@
endef
$(foreach s,$(SLIDES),$(eval $(call slide_rules,$(call slide_id,$(s)),$(s))))

$(OUT)/text/%.mpk: $(OUT)/tiles/%.mpk
	@mkdir -p $(@D)
	$(if $(REPORTS)$(VLM),$(E)/eosin-caption-fetch $(if $(VLM),--vlm $(VLM),--url '$(REPORTS)') $(FETCH_FLAGS) --cache $(OUT)/cache < $< > $@.tmp,cp $< $@.tmp) && mv $@.tmp $@

$(OUT)/emb/%.mpk: $(OUT)/text/%.mpk $(MODEL) $(TEXT_MODEL)
	@mkdir -p $(@D)
	$(E)/eosin-encode --model $(MODEL) $(if $(TEXT_MODEL),--text-model $(TEXT_MODEL) --vocab $(VOCAB)) $(ENC_FLAGS) < $< > $@.tmp && mv $@.tmp $@

$(OUT)/bags/%.mpk: $(OUT)/emb/%.mpk
	@mkdir -p $(@D)
	$(E)/eosin-bag $(BAG_FLAGS) < $< > $@.tmp && mv $@.tmp $@

# Training sees every slide's bags; the head is written atomically by eosin-align.
$(OUT)/head.safetensors: $(IDS:%=$(OUT)/bags/%.mpk)
	cat $^ | $(E)/eosin-align --train --out $@ $(ALIGN_FLAGS) --metrics $(OUT)/train-metrics.jsonl --plot $(OUT)/train.svg

$(OUT)/joint.mpk: $(OUT)/head.safetensors $(IDS:%=$(OUT)/bags/%.mpk)
	cat $(IDS:%=$(OUT)/bags/%.mpk) | $(E)/eosin-align --apply $< > $@.tmp && mv $@.tmp $@

$(OUT)/index.faiss: $(OUT)/joint.mpk
	$(E)/eosin-index --out $@ $(INDEX_FLAGS) < $<

train: $(OUT)/head.safetensors
index: $(OUT)/index.faiss

# Evaluation: retrieval between the image and text sides of the bags.
$(OUT)/eval.json: $(OUT)/joint.mpk
	$(E)/eosin-query --eval-retrieval --metrics $@.tmp < $< > /dev/null && mv $@.tmp $@
eval: $(OUT)/eval.json

clean:
	rm -rf $(OUT)
