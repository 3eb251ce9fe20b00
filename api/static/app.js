// mlrag chat page: streams answers from /v1/ask (Server-Sent Events over fetch), shows
// citations as links, keeps the conversation history for follow-ups, sends feedback.
"use strict";

(function () {
  const form = document.getElementById("ask-form");
  const question = document.getElementById("question");
  const retriever = document.getElementById("retriever");
  const generator = document.getElementById("generator");
  const askButton = document.getElementById("ask-button");
  const newConversation = document.getElementById("new-conversation");
  const apiKey = document.getElementById("api-key");
  const statusLine = document.getElementById("status");
  const conversation = document.getElementById("conversation");
  const template = document.getElementById("turn-template");

  let history = []; // [{role, content}], oldest first
  let busy = false;

  apiKey.value = sessionStorage.getItem("mlrag-api-key") || "";
  apiKey.addEventListener("change", () => {
    sessionStorage.setItem("mlrag-api-key", apiKey.value.trim());
    loadConfig();
  });

  function headers(extra) {
    const h = Object.assign({ "Content-Type": "application/json" }, extra || {});
    const key = apiKey.value.trim();
    if (key) h["Authorization"] = "Bearer " + key;
    return h;
  }

  function setStatus(text, isError) {
    statusLine.textContent = text;
    statusLine.classList.toggle("error", Boolean(isError));
  }

  function fillSelect(select, names, chosen) {
    select.replaceChildren();
    for (const name of names) {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      if (name === chosen) option.selected = true;
      select.appendChild(option);
    }
  }

  async function loadConfig() {
    try {
      const response = await fetch("/v1/config", { headers: headers() });
      if (!response.ok) throw new Error(await errorMessage(response));
      const config = await response.json();
      fillSelect(retriever, config.retrievers, config.default_retriever);
      fillSelect(generator, config.generators, config.default_generator);
      question.maxLength = config.max_question_chars;
      if (!config.ready) setStatus("The index is not loaded yet; answers will fail until it is.", true);
    } catch (err) {
      setStatus("Could not load the options: " + err.message, true);
    }
  }

  async function errorMessage(response) {
    try {
      const body = await response.json();
      if (body && body.error) return body.error.message + " (" + body.error.code + ")";
    } catch (_) { /* not JSON */ }
    return "HTTP " + response.status;
  }

  // Answer text with [n] markers turned into links to the cited source.
  function renderAnswer(container, text, citations) {
    container.replaceChildren();
    const byNumber = new Map((citations || []).map((c) => [c.n, c]));
    const parts = text.split(/(\[\d+\])/);
    for (const part of parts) {
      const match = /^\[(\d+)\]$/.exec(part);
      const citation = match ? byNumber.get(Number(match[1])) : null;
      if (citation && citation.url) {
        const link = document.createElement("a");
        link.className = "marker";
        link.href = citation.url;
        link.target = "_blank";
        link.rel = "noopener noreferrer";
        link.textContent = part;
        link.title = citation.title || citation.url;
        container.appendChild(link);
      } else {
        container.appendChild(document.createTextNode(part));
      }
    }
  }

  function renderSources(turn, answer) {
    const box = turn.querySelector(".sources");
    const list = box.querySelector("ol");
    list.replaceChildren();
    if (answer.abstained || !answer.citations || answer.citations.length === 0) {
      box.hidden = true;
      return;
    }
    for (const c of answer.citations) {
      const item = document.createElement("li");
      item.value = c.n;
      const link = document.createElement("a");
      link.className = "source-link";
      link.textContent = c.title || c.source || c.url;
      if (c.url) {
        link.href = c.url;
        link.target = "_blank";
        link.rel = "noopener noreferrer";
      }
      item.appendChild(link);
      if (c.url) {
        const url = document.createElement("span");
        url.className = "url";
        url.textContent = c.url;
        item.appendChild(url);
      }
      if (c.quote) {
        const quote = document.createElement("blockquote");
        quote.textContent = c.quote;
        item.appendChild(quote);
      }
      list.appendChild(item);
    }
    box.hidden = false;
  }

  function enableFeedback(turn, q, answer, requestId) {
    const box = turn.querySelector(".feedback");
    const done = box.querySelector(".feedback-done");
    box.hidden = false;
    for (const button of box.querySelectorAll(".thumb")) {
      button.addEventListener("click", async () => {
        for (const b of box.querySelectorAll(".thumb")) b.setAttribute("aria-pressed", String(b === button));
        try {
          const response = await fetch("/v1/feedback", {
            method: "POST",
            headers: headers(),
            body: JSON.stringify({
              rating: button.dataset.rating,
              question: q,
              answer: answer.text,
              request_id: requestId,
              generator: answer.generator,
              retriever: answer.retriever,
              citations: (answer.citations || []).map((c) => c.url || c.chunk_id).slice(0, 50),
            }),
          });
          if (!response.ok) throw new Error(await errorMessage(response));
          done.textContent = "Thanks for the feedback.";
        } catch (err) {
          done.textContent = "Feedback failed: " + err.message;
        }
      });
    }
  }

  // Calls onEvent(name, data) for every complete SSE message of a fetch response body.
  async function readEvents(response, onEvent) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) onEvent(name, JSON.parse(data.join("\n")));
      }
    }
  }

  async function ask(q) {
    busy = true;
    askButton.disabled = true;
    setStatus("Answering…");
    const turn = template.content.firstElementChild.cloneNode(true);
    turn.querySelector(".q").textContent = q;
    const answerBox = turn.querySelector(".answer");
    conversation.appendChild(turn);
    turn.scrollIntoView({ block: "nearest" });
    let streamed = "";
    let final = null;
    try {
      const response = await fetch("/v1/ask", {
        method: "POST",
        headers: headers({ Accept: "text/event-stream" }),
        body: JSON.stringify({
          question: q,
          retriever: retriever.value || null,
          generator: generator.value || null,
          history: history,
          stream: true,
        }),
      });
      if (!response.ok) throw new Error(await errorMessage(response));
      const requestId = response.headers.get("X-Request-ID");
      await readEvents(response, (name, data) => {
        if (name === "token") {
          streamed += data.text;
          answerBox.textContent = streamed;
        } else if (name === "answer") {
          final = data;
        } else if (name === "error") {
          throw new Error(data.error.message + " (" + data.error.code + ")");
        }
      });
      if (!final) throw new Error("the answer stream ended early");
      // The final text is authoritative (invalid citation markers removed).
      renderAnswer(answerBox, final.text, final.abstained ? [] : final.citations);
      turn.classList.toggle("abstained", final.abstained);
      turn.querySelector(".abstained-note").hidden = !final.abstained;
      renderSources(turn, final);
      enableFeedback(turn, q, final, requestId);
      history.push({ role: "user", content: q }, { role: "assistant", content: final.text });
      history = history.slice(-20);
      setStatus(final.abstained ? "Not covered by the documents." : "Answered with " + final.citations.length + " source(s).");
    } catch (err) {
      const p = document.createElement("p");
      p.className = "error-text";
      p.textContent = "Error: " + err.message;
      turn.appendChild(p);
      setStatus("The answer failed: " + err.message, true);
    } finally {
      answerBox.setAttribute("aria-busy", "false");
      busy = false;
      askButton.disabled = false;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = question.value.trim();
    if (!q || busy) return;
    question.value = "";
    ask(q);
    question.focus();
  });

  question.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  newConversation.addEventListener("click", () => {
    history = [];
    conversation.replaceChildren();
    setStatus("New conversation.");
    question.focus();
  });

  loadConfig();
})();
