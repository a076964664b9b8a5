// scandx web page, the answer: a classifier's label, probability bars, uncertainty,
// out-of-distribution warning and heatmap; a segmenter's regions, mask preview slice by
// slice and mask download. Every piece of text from the service is set with
// textContent (never innerHTML); images only from base64 that passes a strict check.
"use strict";

window.scandxResult = (() => {
  const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
  const MASK_NAMES = { "dicom-seg": "mask.seg.dcm", nifti: "mask.nii.gz", png: "mask.png" };
  const MASK_KINDS = { "dicom-seg": "DICOM SEG", nifti: "NIfTI", png: "PNG" };
  const $ = (id) => document.getElementById(id);
  let objectUrls = [];
  let slices = null; // {images: [data URLs], index, img, range, text, depth}

  // --- small DOM helpers: every piece of text goes through textContent -------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (name === "text") node.textContent = value;
      else if (name === "className") node.className = value;
      else if (name.startsWith("aria-") || name === "role" || name === "for") {
        node.setAttribute(name, String(value));
      } else node[name] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function short(sha) {
    return typeof sha === "string" ? sha.slice(0, 12) : "unknown";
  }

  function clear() {
    for (const url of objectUrls) URL.revokeObjectURL(url);
    objectUrls = [];
    slices = null;
    $("result-body").replaceChildren();
    $("answered-by").replaceChildren();
  }

  function pngUrl(data) {
    return typeof data === "string" && BASE64.test(data) ? `data:image/png;base64,${data}` : null;
  }

  function percent(p) {
    return `${(100 * p).toFixed(1)} %`;
  }

  function fraction(p) {
    return typeof p === "number" && isFinite(p) ? Math.min(1, Math.max(0, p)) : 0;
  }

  function renderResult(body, model) {
    const header = body.model || {};
    const sha = typeof header.weights_sha256 === "string" ? header.weights_sha256 : "";
    $("answered-by").replaceChildren(
      "Answered by model ",
      el("strong", { text: header.name || model.name }),
      `, version ${header.version || "unknown"}, weights sha256 `,
      el("code", { text: short(sha), title: sha, className: "sha" }),
      header.runtime ? ` (${header.runtime})` : "",
      ".",
    );
    const predictions = Array.isArray(body.predictions) ? body.predictions : [];
    const out = $("result-body");
    if (model.task === "segmentation") {
      if (predictions[0]) out.append(segmentation(predictions[0]));
    } else {
      predictions.forEach((p, i) => out.append(classification(p, i, predictions.length)));
    }
  }

  // --- a classifier's answer ---------------------------------------------------------

  function classification(p, i, count) {
    const card = el("article", { className: "card prediction" });
    const title = count > 1 ? `Image ${i + 1} of ${count}` : "Prediction";
    card.append(el("h3", { text: title }));
    const label = typeof p.label === "string" && p.label ? p.label.split(";").join(", ") : "none of the classes";
    card.append(el("p", { className: "label" }, "Label at the operating point: ", el("strong", { className: "label-value", text: label })));

    const binary = typeof p.threshold === "number" && typeof p.positive_class === "string";
    const list = el("ul", { className: "bars", "aria-label": "Probability per class" });
    for (const [name, prob] of Object.entries(p.probabilities || {})) {
      const value = fraction(prob);
      const track = el("div", {
        className: "track",
        role: "meter",
        "aria-valuemin": 0,
        "aria-valuemax": 1,
        "aria-valuenow": value.toFixed(3),
        "aria-label": `Probability of ${name}`,
      });
      const fill = el("div", { className: "fill" });
      fill.style.width = `${100 * value}%`;
      track.append(fill);
      if (binary && name === p.positive_class) {
        const mark = el("div", { className: "threshold", title: `threshold ${p.threshold.toFixed(3)}` });
        mark.style.left = `${100 * fraction(p.threshold)}%`;
        track.append(mark);
      }
      list.append(el("li", { className: "bar" }, el("span", { className: "class-name", text: name }), track, el("span", { className: "value", text: percent(value) })));
    }
    card.append(list);
    if (binary) {
      card.append(el("p", {
        className: "help",
        text: `The mark on the ${p.positive_class} bar is the operating point: ${p.positive_class} when its probability is at least ${percent(fraction(p.threshold))}.`,
      }));
    }

    const facts = el("dl", { className: "facts" });
    if (typeof p.uncertainty === "number") {
      facts.append(el("dt", { text: "Uncertainty" }), el("dd", { text: `${p.uncertainty.toFixed(3)} (higher means the model is less sure)` }));
    }
    if (typeof p.ood_score === "number") {
      facts.append(el("dt", { text: "Out-of-distribution score" }), el("dd", { text: p.ood_score.toFixed(3) }));
    }
    card.append(facts);
    if (p.ood_flag === true) {
      card.append(el("p", {
        className: "warn ood",
        role: "note",
        text: "Warning: this image is unlike the images the model was trained on (out of distribution). Do not rely on this prediction.",
      }));
    } else if (p.ood_flag === false) {
      card.append(el("p", { className: "ok", text: "Within the range of the training images (not out of distribution)." }));
    } else {
      card.append(el("p", { className: "help", text: "This model has no out-of-distribution check." }));
    }

    const heat = p.heatmap;
    const src = heat && pngUrl(heat.overlay_png);
    if (src) {
      const what = `${heat.method || "explanation"} heatmap for class ${heat.class}`;
      card.append(el("figure", { className: "image" },
        el("img", { src, alt: `The uploaded image with the ${what} overlaid`, className: "heatmap" }),
        el("figcaption", { text: `Where the model looked: ${what} (warm colours weigh most).` })));
    }
    return card;
  }

  // --- a segmenter's answer ----------------------------------------------------------

  function segmentation(p) {
    const card = el("article", { className: "card segmentation" });
    card.append(el("h3", { text: "Segmentation" }));
    const unit = p.volume_unit === "ml" ? "ml" : "mm²";
    const key = p.volume_unit === "ml" ? "ml" : "mm2";
    const table = el("table", { className: "regions" });
    table.append(
      el("caption", { text: "Regions found" }),
      el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Region" }), el("th", { scope: "col", text: "Voxels" }), el("th", { scope: "col", text: `Volume (${unit})` }))),
    );
    const rows = el("tbody");
    for (const [name, r] of Object.entries(p.regions || {})) {
      rows.append(el("tr", {}, el("th", { scope: "row", text: name }), el("td", { text: String(r.voxels) }), el("td", { text: String(r[key]) })));
    }
    table.append(rows);
    card.append(table);

    const images = (Array.isArray(p.preview) ? p.preview : []).map(pngUrl).filter(Boolean);
    if (images.length) card.append(slicer(images, Array.isArray(p.shape) ? p.shape : []));

    const mask = p.mask;
    if (mask && typeof mask.data === "string" && BASE64.test(mask.data)) {
      const bytes = Uint8Array.from(atob(mask.data), (c) => c.charCodeAt(0));
      const type = typeof mask.media_type === "string" ? mask.media_type : "application/octet-stream";
      const url = URL.createObjectURL(new Blob([bytes], { type }));
      objectUrls.push(url);
      const kind = MASK_KINDS[mask.format] || "file";
      card.append(el("p", {}, el("a", {
        href: url,
        download: MASK_NAMES[mask.format] || "mask.bin",
        className: "download",
        text: `Download the mask (${kind}, ${(bytes.length / 1024).toFixed(1)} KiB)`,
      })));
    }
    return card;
  }

  function slicer(images, shape) {
    const volume = shape.length === 3;
    const img = el("img", { className: "preview", alt: "" });
    const figure = el("figure", { className: "image slices" }, img);
    slices = { images, index: 0, img, range: null, text: null, depth: volume ? shape[0] : 1 };
    if (images.length > 1) {
      const range = el("input", { type: "range", id: "slice", min: "1", max: String(images.length), step: "1", value: "1" });
      const text = el("output", { id: "slice-text", for: "slice" });
      range.addEventListener("input", () => showSlice(Number(range.value) - 1));
      figure.tabIndex = 0;
      figure.setAttribute("aria-label", "Mask preview: use the arrow keys to step through the slices");
      figure.addEventListener("keydown", onSliceKey);
      figure.append(el("div", { className: "slice-control" }, el("label", { for: "slice", text: "Slice" }), range, text));
      slices.range = range;
      slices.text = text;
    }
    figure.append(el("figcaption", { text: "The mask (colour) over the uploaded image." }));
    showSlice(0);
    return figure;
  }

  function showSlice(index) {
    if (!slices) return;
    const n = slices.images.length;
    const i = Math.min(n - 1, Math.max(0, index));
    slices.index = i;
    slices.img.src = slices.images[i];
    slices.img.alt = n > 1 ? `Mask over the image, slice ${i + 1} of ${n}` : "Mask over the image";
    if (slices.range) {
      slices.range.value = String(i + 1);
      const of = slices.depth > n ? ` (evenly spaced through ${slices.depth})` : "";
      slices.text.textContent = `${i + 1} of ${n}${of}`;
    }
  }

  function onSliceKey(event) {
    if (!slices || event.target === slices.range) return; // the slider steps itself
    const steps = { ArrowLeft: -1, ArrowDown: -1, ArrowRight: 1, ArrowUp: 1, PageDown: -5, PageUp: 5 };
    if (event.key in steps) showSlice(slices.index + steps[event.key]);
    else if (event.key === "Home") showSlice(0);
    else if (event.key === "End") showSlice(slices.images.length - 1);
    else return;
    event.preventDefault();
  }

  // --- similar cases (scandx serve --index) -------------------------------------------

  function similarCases(body) {
    const card = el("article", { className: "card similar", "aria-labelledby": "similar-title" });
    const index = body.index || {};
    card.append(el("h3", { id: "similar-title", text: "Similar cases" }));
    card.append(el("p", {
      className: "help",
      text: `The nearest of ${index.cases} indexed cases (${index.embedding} embedding, ${index.search} search; smaller distance is nearer). Similar-looking cases, not a diagnosis.`,
    }));
    for (const result of Array.isArray(body.results) ? body.results : []) {
      for (const w of Array.isArray(result.warnings) ? result.warnings : []) {
        card.append(el("p", { className: "warn", role: "note", text: `Warning: ${w}` }));
      }
      const list = el("ol", { className: "neighbours" });
      for (const n of Array.isArray(result.neighbours) ? result.neighbours : []) {
        const src = pngUrl(n.thumbnail_png);
        const label = typeof n.label === "string" && n.label ? n.label : "unlabelled";
        const distance = typeof n.distance === "number" ? n.distance.toFixed(3) : "?";
        list.append(el("li", { className: "neighbour" },
          src ? el("img", { src, alt: `Similar case ${n.rank}, labelled ${label}` }) : null,
          el("div", { className: "neighbour-label", text: `${n.rank}. ${label}` }),
          el("div", { text: `distance ${distance}` }),
          el("div", { className: "case-id", text: String(n.case_id || "") })));
      }
      card.append(list);
    }
    $("result-body").append(card);
  }

  function similarFailed(message) {
    $("result-body").append(el("article", { className: "card similar" },
      el("h3", { text: "Similar cases" }),
      el("p", { className: "warn", role: "note", text: message })));
  }

  return Object.freeze({ el, short, clear, render: renderResult, similarCases, similarFailed });
})();
