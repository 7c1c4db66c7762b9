// GraphiQL against this router's /graphql: queries and mutations over HTTP, subscriptions
// over a WebSocket (graphql-transport-ws). The headers typed in GraphiQL's header editor
// (an API key, say) go on every HTTP request and, as the connection_init payload, on every
// WebSocket: browsers cannot set headers on a WebSocket, and the router reads them there.
(function () {
  "use strict";

  var endpoint = new URL("/graphql", window.location.href).href;
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

    function push(item) {
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

  var defaultQuery =
    "# Junction's GraphQL API: put your API key in the Headers tab below,\n" +
    "# then run this query (Ctrl-Enter).\n" +
    "query Endpoints {\n  endpoints(first: 10) {\n    edges { node { id url } }\n  }\n}\n\n" +
    "# Live: every delivery attempt as it happens.\n" +
    "subscription Attempts {\n  deliveryAttempts {\n    status\n    attempt { statusCode durationMs endpoint { url } }\n  }\n}\n";

  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      defaultHeaders: '{\n  "Authorization": "Bearer <your API key>"\n}',
      shouldPersistHeaders: true,
      isHeadersEditorEnabled: true,
      defaultEditorToolsVisibility: "headers",
    })
  );
})();
