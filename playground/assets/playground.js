// GraphiQL against this router's /graphql: queries and mutations over HTTP, subscriptions
// over a WebSocket (graphql-transport-ws). The headers typed in GraphiQL's header editor
// (an API key, say) go on every HTTP request and, as the connection_init payload, on every
// WebSocket: browsers cannot set headers on a WebSocket, and the router reads them there.
(function () {
  "use strict";

  var endpoint = new URL("/graphql", window.location.href).href;
  var MAX_EVENTS = 100;
  var HEADERS_KEY = "graphiql:headers";
  var PLACEHOLDER = "<your API key>";
  var socketEndpoint = endpoint.replace(/^http/, "ws");

  function isSubscription(params) {
    try {
      var document = GraphiQL.GraphQL.parse(params.query);
      var operations = document.definitions.filter(function (d) {
        return d.kind === "OperationDefinition";
      });
      var chosen = operations.find(function (d) {
        return params.operationName ? d.name && d.name.value === params.operationName : true;
      });
      return Boolean(chosen) && chosen.operation === "subscription";
    } catch (e) {
      return false; // the router reports the syntax error
    }
  }

  // One subscription on a socket of its own, as an async iterator of results.
  function subscribe(params, headers) {
    var queue = [];
    var wake = null;
    var finished = false;
    var socket = new WebSocket(socketEndpoint, "graphql-transport-ws");

    // Every event so far stays on screen, newest first (GraphiQL shows the latest value
    // only): at most MAX_EVENTS of them.
    var events = [];
    function push(item) {
      if (!item.done && item.value && !item.value.errors) {
        events.unshift(item.value);
        events.length = Math.min(events.length, MAX_EVENTS);
        item = { value: { events: events.slice() } };
      }
      queue.push(item);
      if (wake) {
        wake();
        wake = null;
      }
    }
    function send(message) {
      socket.send(JSON.stringify(message));
    }
    function close() {
      if (finished) return;
      finished = true;
      if (socket.readyState === WebSocket.OPEN) {
        send({ id: "1", type: "complete" });
        socket.close(1000);
      } else if (socket.readyState === WebSocket.CONNECTING) {
        socket.close();
      }
    }

    socket.onopen = function () {
      send({ type: "connection_init", payload: headers });
    };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      switch (message.type) {
        case "connection_ack":
          send({ id: "1", type: "subscribe", payload: params });
          break;
        case "ping":
          send({ type: "pong" });
          break;
        case "next":
          push({ value: message.payload });
          break;
        case "error":
          push({ value: { errors: message.payload } });
          push({ done: true });
          break;
        case "complete":
          push({ done: true });
          break;
      }
    };
    socket.onclose = function (event) {
      if (!finished && event.code !== 1000) {
        var reason = event.code === 4403 ? "credentials refused" : event.reason || "connection lost";
        push({ value: { errors: [{ message: "WebSocket closed (" + event.code + "): " + reason }] } });
      }
      push({ done: true });
    };

    var iterator = {
      next: function () {
        return new Promise(function (resolve) {
          function take() {
            if (!queue.length) {
              wake = take;
              return;
            }
            var item = queue.shift();
            if (item.done) {
              close();
              resolve({ done: true, value: undefined });
            } else {
              resolve({ done: false, value: item.value });
            }
          }
          take();
        });
      },
      return: function () {
        close();
        return Promise.resolve({ done: true, value: undefined });
      },
    };
    iterator[Symbol.asyncIterator] = function () {
      return iterator;
    };
    return iterator;
  }

  function fetcher(params, options) {
    var headers = Object.assign({}, options && options.headers);
    if (isSubscription(params)) {
      return subscribe(params, headers);
    }
    return fetch(endpoint, {
      method: "POST",
      headers: Object.assign({ "content-type": "application/json", accept: "application/json" }, headers),
      body: JSON.stringify(params),
    }).then(function (response) {
      return response.json();
    });
  }

  // One operation, so the run button runs it at once. (Live deliveries: replace it with
  // `subscription { deliveryAttempts { status attempt { statusCode endpoint { url } } } }`.)
  var defaultQuery =
    "# Junction's GraphQL API, with the key you entered (Headers tab below).\n" +
    "# Run it with the button or Ctrl-Enter. For live deliveries, run:\n" +
    "#   subscription { deliveryAttempts { status attempt { statusCode endpoint { url } } } }\n" +
    "{\n  endpoints(first: 10) {\n    edges { node { id url } }\n  }\n}\n";

  // A key the headers already carry (GraphiQL keeps them in local storage), else none.
  function storedKey() {
    try {
      var headers = JSON.parse(window.localStorage.getItem(HEADERS_KEY) || "{}");
      var value = headers.Authorization || headers.authorization || "";
      return value && value.indexOf(PLACEHOLDER) === -1 ? value : "";
    } catch (e) {
      return "";
    }
  }

  function renderGraphiQL() {
    ReactDOM.createRoot(document.getElementById("graphiql")).render(
      React.createElement(GraphiQL, {
        fetcher: fetcher,
        defaultQuery: defaultQuery,
        shouldPersistHeaders: true,
        isHeadersEditorEnabled: true,
        defaultEditorToolsVisibility: "headers",
      })
    );
  }

  // No key yet: ask for one first, so the first thing a person sees is not an error from a
  // request sent with a placeholder. With it, GraphiQL starts and fetches the schema at once.
  function askForKey() {
    var root = document.getElementById("graphiql");
    root.innerHTML = "";
    var form = document.createElement("form");
    form.className = "key-form";
    form.innerHTML =
      "<h1>Junction playground</h1>" +
      "<p>Paste an API key: <code>junction serve</code> prints the first one when it starts " +
      "(<code>jk_live_...</code>); <code>junction apikey create</code> makes more.</p>";
    var input = document.createElement("input");
    input.type = "password";
    input.name = "key";
    input.placeholder = "jk_live_...";
    input.autocomplete = "off";
    input.setAttribute("aria-label", "API key");
    var button = document.createElement("button");
    button.type = "submit";
    button.textContent = "Open the playground";
    form.appendChild(input);
    form.appendChild(button);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var key = input.value.trim();
      if (!key) return;
      var bearer = /^bearer /i.test(key) ? key : "Bearer " + key;
      window.localStorage.setItem(HEADERS_KEY, JSON.stringify({ Authorization: bearer }, null, 2));
      root.innerHTML = "";
      renderGraphiQL();
    });
    root.appendChild(form);
    input.focus();
  }

  if (storedKey()) {
    renderGraphiQL();
  } else {
    askForKey();
  }
})();
