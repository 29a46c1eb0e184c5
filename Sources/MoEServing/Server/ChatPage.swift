import Foundation
/// `GET /`: a one-file chat page that streams replies from `/v1/chat/completions` (no external assets).
enum ChatPage {
    static func html(model: String) -> String {
        let escaped = model.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
        return """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>swift-moe · \(escaped)</title><link rel="icon" href="data:,">
        <style>
        body { font: 15px/1.45 system-ui, sans-serif; max-width: 760px; margin: 2em auto; padding: 0 1em; color: #222; }
        #log { border: 1px solid #ddd; border-radius: 8px; padding: 1em; min-height: 18em; white-space: pre-wrap; }
        .user { color: #0550ae; margin: .6em 0 .2em; } .assistant { margin: .2em 0 .8em; }
        form { display: flex; gap: .5em; margin-top: 1em; } textarea { flex: 1; height: 3.2em; font: inherit; }
        .settings { display: flex; gap: 1em; margin-top: .6em; font-size: 13px; color: #555; } input { font: inherit; }
        #stats { font-size: 12px; color: #777; margin-top: .4em; } .error { color: #b00020; }
        </style></head><body>
        <h2>swift-moe <small style="color:#888">\(escaped)</small></h2>
        <div id="log"></div>
        <form id="f"><textarea id="q" placeholder="Say something… (Enter sends, Shift+Enter for a new line)"></textarea><button>Send</button></form>
        <div class="settings">
          <label>temperature <input id="t" type="number" step="0.1" min="0" max="2" value="0.7" style="width:4em"></label>
          <label>max tokens <input id="m" type="number" min="1" value="256" style="width:5em"></label>
          <label>API key <input id="k" type="password" placeholder="(open server)" style="width:12em"></label>
          <button id="clear" type="button">Clear</button>
        </div>
        <div id="stats"></div>
        <script>
        const model = \(jsonString(model));
        const log = document.getElementById('log'), q = document.getElementById('q'), stats = document.getElementById('stats');
        let messages = [];
        function add(cls, text) { const d = document.createElement('div'); d.className = cls; d.textContent = text; log.appendChild(d); return d; }
        // A turn that failed leaves the conversation as it was before it.
        function fail(div, message) { messages.pop(); div.className = 'assistant error'; div.textContent = 'Error: ' + message; }
        document.getElementById('clear').onclick = () => { messages = []; log.textContent = ''; stats.textContent = ''; };
        q.addEventListener('keydown', e => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); send(); } });
        document.getElementById('f').onsubmit = e => { e.preventDefault(); send(); };
        async function send() {
          const text = q.value.trim(); if (!text) return; q.value = '';
          messages.push({role: 'user', content: text}); add('user', 'You: ' + text);
          const out = add('assistant', ''); let reply = ''; const t0 = performance.now(); let first = 0;
          const headers = {'Content-Type': 'application/json'}; const key = document.getElementById('k').value;
          if (key) headers['Authorization'] = 'Bearer ' + key;
          const body = {model, messages, stream: true, stream_options: {include_usage: true},
                        temperature: parseFloat(document.getElementById('t').value), max_tokens: parseInt(document.getElementById('m').value)};
          try {
            const r = await fetch('/v1/chat/completions', {method: 'POST', headers, body: JSON.stringify(body)});
            if (!r.ok) { fail(out, ((await r.json()).error || {}).message || r.statusText); return; }
            const reader = r.body.getReader(), dec = new TextDecoder(); let buf = '', finished = false;
            for (;;) {
              const {value, done} = await reader.read(); if (done) break;
              buf += dec.decode(value, {stream: true}); let i;
              while ((i = buf.indexOf('\\n\\n')) >= 0) {
                const line = buf.slice(0, i); buf = buf.slice(i + 2);
                if (!line.startsWith('data: ')) continue; const data = line.slice(6); if (data === '[DONE]') { finished = true; continue; }
                const chunk = JSON.parse(data);
                if (chunk.error) { fail(out, chunk.error.message); return; }
                for (const c of chunk.choices) { if (c.delta && c.delta.content) { if (!first) first = performance.now(); reply += c.delta.content; out.textContent = reply; } }
                if (chunk.usage) { const s = (performance.now() - (first || t0)) / 1000;
                  stats.textContent = `${chunk.usage.prompt_tokens} prompt tokens (${chunk.usage.prompt_tokens_details.cached_tokens} cached), ` +
                    `${chunk.usage.completion_tokens} generated; first token after ${((first || t0) - t0).toFixed(0)} ms; ` +
                    `${(chunk.usage.completion_tokens / Math.max(s, 1e-3)).toFixed(1)} tokens/s`; }
              }
            }
            if (!finished) { fail(out, 'the reply was cut off (the server closed the stream).'); return; }
            messages.push({role: 'assistant', content: reply});
          } catch (e) { fail(out, String(e)); }
        }
        </script></body></html>
        """
    }

    private static func jsonString(_ s: String) -> String {
        String(decoding: (try? jsonData([s])) ?? Data("[\"\"]".utf8), as: UTF8.self).dropFirst().dropLast().description
            .replacingOccurrences(of: "</", with: "<\\/")
    }
}
